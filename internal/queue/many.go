package queue

import (
	"context"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"
)

// Storing many messages in one round trip.
//
// Every message is still stored by its own enqueueScript call, so each one
// is atomic on its own exactly as with Enqueue; what EnqueueMany saves is
// the round trips: the calls go to Redis as one pipeline (one write, one
// read, on each side), sent once as group.go sends them. A pipeline is not
// a transaction: when the connection breaks halfway, some scripts may have
// run and others not. Each message's outcome is therefore reported on its
// own, and a retry with the same ids is safe because the script is
// idempotent by id.

// EnqueueResult is the outcome of one message of EnqueueMany.
type EnqueueResult struct {
	ID      string // the stored id: the first one's when Created is false
	Created bool   // false when the Idempotency-Key named an earlier message
	Err     error  // not stored, or a *UnknownOutcomeError (may be stored) from EnqueueManyRetrying
}

// EnqueueMany stores every message of ms, each atomically as Enqueue does,
// in one round trip to Redis per route (one in practice: a batch is one
// app's), and returns one result per message in order. Messages without
// an ID get one. A message with ErrRouteFull or ErrAppFull was refused for
// its queue's limits (nothing stored). With another error it was not
// stored when neverSent says so, and may have been otherwise (its reply
// was lost): EnqueueManyRetrying settles that as far as Redis answers.
// With MinReplicas the route's pipeline ends with one WAIT for all of it.
func (q *Queue) EnqueueMany(ctx context.Context, ms []Message) []EnqueueResult {
	out := make([]EnqueueResult, len(ms))
	if len(ms) == 0 {
		return out
	}
	ps := make([]*pending, len(ms))
	var routes []string
	byRoute := map[string][]*pending{}
	for i := range ms {
		if ms[i].ID == "" {
			ms[i].ID = NewID(q.now())
		}
		ps[i] = q.pending(ctx, ms[i])
		r := ms[i].Route
		if _, ok := byRoute[r]; !ok {
			routes = append(routes, r)
		}
		byRoute[r] = append(byRoute[r], ps[i])
	}
	for _, r := range routes {
		q.send(ctx, r, byRoute[r])
	}
	for i, p := range ps {
		out[i].ID, out[i].Created, out[i].Err = enqueueReply(ms[i].ID, p.res, p.err)
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
// result then says that its message is stored (Err nil), or was not
// (Err set), or, as a *UnknownOutcomeError, that an attempt reached Redis
// and its outcome could not be learnt: it may be stored.
func (q *Queue) EnqueueManyRetrying(ctx context.Context, ms []Message, within time.Duration) []EnqueueResult {
	for i := range ms {
		if ms[i].ID == "" {
			ms[i].ID = NewID(q.now())
		}
	}
	maybeRan := make([]bool, len(ms)) // an attempt may have reached Redis and run
	note := func(idx []int, rs []EnqueueResult) {
		for j, i := range idx {
			if err := rs[j].Err; err != nil && !neverSent(err) {
				maybeRan[i] = true
			}
		}
	}
	out := q.EnqueueMany(ctx, ms)
	all := make([]int, len(ms))
	for i := range all {
		all[i] = i
	}
	note(all, out)
	pause := newRetryPause(within)
	for {
		todo := failed(out)
		if len(todo) == 0 || pause.over(ctx) {
			break
		}
		pause.wait(ctx)
		again := make([]Message, len(todo))
		for j, i := range todo {
			again[j] = ms[i]
		}
		rs := q.EnqueueMany(ctx, again)
		note(todo, rs)
		for j, r := range rs {
			out[todo[j]] = r
		}
	}
	todo := failed(out)
	if len(todo) == 0 {
		return out
	}
	pipe := q.rdb.Pipeline()
	ctx = context.WithoutCancel(ctx)
	exists := make([]*redis.IntCmd, len(todo))
	for j, i := range todo {
		exists[j] = pipe.Exists(ctx, q.route(ms[i].Route).Msg(ms[i].ID))
	}
	_, _ = pipe.Exec(ctx)
	var found []int
	for j, i := range todo {
		switch n, err := exists[j].Result(); {
		case err == nil && n == 1:
			out[i] = EnqueueResult{ID: ms[i].ID, Created: true}
			found = append(found, i)
		case err != nil && maybeRan[i]:
			// Redis did not answer the read either, as EnqueueRetrying.
			out[i].Err = &UnknownOutcomeError{ID: ms[i].ID, Err: out[i].Err}
		}
	}
	if len(found) > 0 && q.minReplicas > 0 {
		// Found stored, but not yet known to be replicated.
		sub := make([]Message, len(found))
		res := make([]EnqueueResult, len(found))
		for j, i := range found {
			sub[j], res[j] = ms[i], out[i]
		}
		q.confirmMany(ctx, sub, res)
		for j, i := range found {
			out[i] = res[j]
		}
	}
	return out
}

// failed are the messages to try again: those Redis failed on. A full
// queue (ErrRouteFull, ErrAppFull) is an answer, not a failure: nothing was
// stored and trying again at once would not change it. Nor is a message
// stored but not replicated (min_replicas_acked): WAIT already waited.
func failed(rs []EnqueueResult) []int {
	var idx []int
	for i, r := range rs {
		var nr *NotReplicatedError
		if r.Err != nil && !errors.Is(r.Err, ErrRouteFull) && !errors.Is(r.Err, ErrAppFull) && !errors.As(r.Err, &nr) {
			idx = append(idx, i)
		}
	}
	return idx
}
