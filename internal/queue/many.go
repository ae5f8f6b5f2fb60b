package queue

import (
	"context"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Storing many messages in one round trip.
//
// Every message is still stored by its own enqueueScript call, so each one
// is atomic on its own exactly as with Enqueue; what EnqueueMany saves is
// the round trips: the calls go to Redis as one pipeline (one write, one
// read, on each side). A pipeline is not a transaction: when the connection
// breaks halfway, some scripts may have run and others not. Each message's
// outcome is therefore reported on its own, and a retry with the same ids
// is safe because the script is idempotent by id.

// EnqueueResult is the outcome of one message of EnqueueMany.
type EnqueueResult struct {
	ID      string // the stored id: the first one's when Created is false
	Created bool   // false when the Idempotency-Key named an earlier message
	Err     error  // not stored (as far as Redis answered)
}

// EnqueueMany stores every message of ms, each atomically as Enqueue does,
// in one round trip to Redis, and returns one result per message in
// order. Messages without an ID get one. A message with an error was not
// stored, or its reply was lost: EnqueueManyRetrying settles that.
func (q *Queue) EnqueueMany(ctx context.Context, ms []Message) []EnqueueResult {
	out := make([]EnqueueResult, len(ms))
	if len(ms) == 0 {
		return out
	}
	for i := range ms {
		if ms[i].ID == "" {
			ms[i].ID = NewID(q.now())
		}
	}
	keys := make([][]string, len(ms))
	args := make([][]any, len(ms))
	for i := range ms {
		keys[i], args[i] = q.enqueueCall(ms[i])
	}
	run := func() []*redis.Cmd {
		cmds := make([]*redis.Cmd, len(ms))
		pipe := q.rdb.Pipeline()
		for i := range ms {
			cmds[i] = pipe.EvalSha(ctx, enqueueScript.Hash(), keys[i], args[i]...)
		}
		_, _ = pipe.Exec(ctx) // errors are read per command
		return cmds
	}
	cmds := run()
	for _, c := range cmds {
		if c.Err() != nil && redis.HasErrorPrefix(c.Err(), "NOSCRIPT") {
			// A fresh or restarted Redis: load the script and run them all
			// again, which is safe (idempotent by id).
			if err := enqueueScript.Load(ctx, q.rdb).Err(); err == nil {
				cmds = run()
			}
			break
		}
	}
	for i, c := range cmds {
		res, err := c.Slice()
		out[i].ID, out[i].Created, out[i].Err = enqueueReply(ms[i].ID, res, err)
		if out[i].Err != nil {
			out[i].ID = ms[i].ID
		}
	}
	return out
}

// EnqueueManyRetrying is EnqueueMany retried, for the messages that failed
// and with their ids, while Redis fails, for up to within, as
// EnqueueRetrying does for one. When the retries run out, one pipelined
// read settles which of the remaining messages Redis did store. Each
// result then says for certain whether its message is stored (Err nil) or
// most likely not (Err set).
func (q *Queue) EnqueueManyRetrying(ctx context.Context, ms []Message, within time.Duration) []EnqueueResult {
	for i := range ms {
		if ms[i].ID == "" {
			ms[i].ID = NewID(q.now())
		}
	}
	out := q.EnqueueMany(ctx, ms)
	deadline := time.Now().Add(within)
	wait := 50 * time.Millisecond
	for {
		todo := failed(out)
		if len(todo) == 0 || ctx.Err() != nil || time.Now().Add(wait).After(deadline) {
			break
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
		wait = min(2*wait, time.Second)
		again := make([]Message, len(todo))
		for j, i := range todo {
			again[j] = ms[i]
		}
		for j, r := range q.EnqueueMany(ctx, again) {
			out[todo[j]] = r
		}
	}
	if todo := failed(out); len(todo) > 0 {
		pipe := q.rdb.Pipeline()
		ctx := context.WithoutCancel(ctx)
		exists := make([]*redis.IntCmd, len(todo))
		for j, i := range todo {
			exists[j] = pipe.Exists(ctx, q.route(ms[i].Route).Msg(ms[i].ID))
		}
		_, _ = pipe.Exec(ctx)
		for j, i := range todo {
			if n, err := exists[j].Result(); err == nil && n == 1 {
				out[i] = EnqueueResult{ID: ms[i].ID, Created: true}
			}
		}
	}
	return out
}

func failed(rs []EnqueueResult) []int {
	var idx []int
	for i, r := range rs {
		if r.Err != nil {
			idx = append(idx, i)
		}
	}
	return idx
}

// Limits of the grouping of EnqueueRetrying: pipelines in flight at once
// (connections busy with them), and messages in one pipeline.
const (
	groupFlushers = 4
	groupMax      = 128
)

// grouper sends concurrent single enqueues to Redis together. A caller
// that finds fewer than maxFlushers pipelines in flight sends what waits
// (itself included) as one pipeline and keeps sending until nothing
// waits; a caller arriving while every flusher is busy only waits, and
// goes in the next pipeline. Alone, a caller sends its own message at
// once: grouping adds no delay, it only uses the time a round trip takes
// anyway. Each caller still gets its own message's outcome, after its own
// script ran.
type grouper struct {
	q           *Queue
	maxFlushers int
	maxGroup    int

	mu       sync.Mutex
	waiting  []*groupCall
	flushers int
}

type groupCall struct {
	ctx  context.Context
	m    Message
	res  EnqueueResult
	done chan struct{}
}

func (g *grouper) enqueue(ctx context.Context, m Message) (string, bool, error) {
	c := &groupCall{ctx: ctx, m: m, done: make(chan struct{})}
	g.mu.Lock()
	g.waiting = append(g.waiting, c)
	flush := g.flushers < g.maxFlushers
	if flush {
		g.flushers++
	}
	g.mu.Unlock()
	if flush {
		g.flush(ctx)
	}
	<-c.done
	return c.res.ID, c.res.Created, c.res.Err
}

// flush sends groups until nothing waits. The pipeline is not cancelled
// with the flushing caller's request: it carries other callers' messages.
func (g *grouper) flush(ctx context.Context) {
	ctx = context.WithoutCancel(ctx)
	for {
		g.mu.Lock()
		n := min(len(g.waiting), g.maxGroup)
		if n == 0 {
			g.flushers--
			g.mu.Unlock()
			return
		}
		group := g.waiting[:n:n]
		g.waiting = append([]*groupCall(nil), g.waiting[n:]...)
		g.mu.Unlock()

		ms := make([]Message, len(group))
		for i, c := range group {
			ms[i] = c.m
		}
		var res []EnqueueResult
		if len(ms) == 1 {
			id, created, err := g.q.Enqueue(ctx, ms[0])
			res = []EnqueueResult{{ID: id, Created: created, Err: err}}
		} else {
			res = g.q.EnqueueMany(ctx, ms)
		}
		for i, c := range group {
			c.res = res[i]
			close(c.done)
		}
	}
}
