package queue

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/redis/go-redis/v9"
)

// Sending enqueue scripts, alone or many to a pipeline.
//
// Redis runs one command at a time, and under load what one enqueue costs
// it is as much the round trip (a read and a write system call, the
// loopback or network stack) as the script: grouping the scripts of
// concurrent submissions into one pipeline pays the round trip once for
// the group. The grouper does that without a timer: a caller that finds
// fewer than groupInFlight pipelines of its route in flight sends at
// once, alone; callers that arrive while they are in flight wait, and
// the first pipeline to finish hands the waiting ones (up to groupMax) to
// the first of them, which sends them as one pipeline. Each caller still
// gets its own script's reply: every message is stored atomically on its
// own, a pipeline is not a transaction.
//
// What a caller is told when Redis fails must stay true for every message
// of a pipeline (EnqueueRetrying, UnknownOutcomeError):
//
//   - A pipeline is sent once. go-redis retries a failed command or
//     pipeline by itself (MaxRetries), and its last attempt's error
//     replaces the first one's on every command, those whose replies had
//     been read included: a script that ran, whose reply was lost, then
//     showed the retry's "connection refused" and passed for never sent.
//     The scripts are therefore sent as commands go-redis does not retry
//     (onceCmd); the retries are EnqueueRetrying's, which knows that an
//     attempt may have run.
//   - Whatever reached Redis may have run: a script whose reply was not
//     read (the connection broke after the pipeline was written, or
//     while it was) gets that error, which neverSent does not take for
//     "not sent". Only a failure to get a connection at all (a refused
//     dial, no free connection) says that nothing of the pipeline was
//     sent. A script whose reply was read before the connection broke
//     gets its reply (scriptReply).
//   - A caller that gives up while it waits to be sent (its context ends)
//     is taken out of the queue first, so nothing of it is sent; once it
//     is in a pipeline it waits for that pipeline's reply.
//   - A reply refusing a script before it ran (MOVED once go-redis's
//     redirections ran out, CLUSTERDOWN, NOSCRIPT...) is "not run" too
//     (notRun).
//   - On Redis Cluster, go-redis learns that a master died only through
//     its own retries, which the scripts do without: a failed pipeline
//     has the cluster client reload its layout (staleLayout), so that
//     EnqueueRetrying's next attempt goes to the promoted replica.
//
// All the scripts of a pipeline are of one route, so on Redis Cluster the
// pipeline goes to one node (every key of a route shares its hash tag);
// with redis.min_replicas_acked one WAIT after the group covers all of it,
// since the replication stream is ordered.

// Limits of the grouping: pipelines of one route in flight at once (the
// connections they hold), and scripts in one pipeline.
const (
	groupInFlight = 4
	groupMax      = 128
)

// pending is one enqueue script call: what to send and, once sent, its
// reply.
type pending struct {
	ctx  context.Context
	id   string
	keys []string
	args []any
	res  []any
	err  error
	// wake receives, once, nil when the reply is in, or the pipeline this
	// call is to send (itself first) when it is its turn to lead.
	wake chan []*pending
}

// grouper queues the enqueue calls of each route.
type grouper struct {
	q      *Queue
	mu     sync.Mutex
	routes map[string]*routeQueue
}

type routeQueue struct {
	waiting  []*pending
	inFlight int
}

// errWithdrawn is the error of a call whose context ended before it was
// sent: nothing of it reached Redis.
var errWithdrawn = errors.New("not sent: the caller gave up while waiting for a pipeline")

// enqueue sends p with other calls of route, or alone, and returns when
// its reply (or error) is in p.
func (g *grouper) enqueue(route string, p *pending) {
	g.mu.Lock()
	r := g.routes[route]
	if r == nil {
		r = &routeQueue{}
		g.routes[route] = r
	}
	var batch []*pending
	if r.inFlight < groupInFlight {
		r.inFlight++
		batch = []*pending{p}
	} else {
		p.wake = make(chan []*pending, 1)
		r.waiting = append(r.waiting, p)
	}
	g.mu.Unlock()
	if batch == nil {
		select {
		case batch = <-p.wake:
		case <-p.ctx.Done():
			if g.withdraw(route, p) {
				p.err = fmt.Errorf("%w: %w", errWithdrawn, p.ctx.Err())
				return
			}
			batch = <-p.wake // taken into a pipeline meanwhile
		}
		if batch == nil {
			return // sent by another caller
		}
	}
	// The pipeline carries other callers' messages: it is not cut short
	// when this caller's context ends.
	g.q.send(context.WithoutCancel(p.ctx), route, batch)
	for _, o := range batch[1:] {
		o.wake <- nil
	}
	g.mu.Lock()
	if len(r.waiting) == 0 {
		r.inFlight--
		if r.inFlight == 0 {
			delete(g.routes, route)
		}
		g.mu.Unlock()
		return
	}
	n := min(len(r.waiting), groupMax)
	next := r.waiting[:n:n]
	r.waiting = append([]*pending(nil), r.waiting[n:]...)
	g.mu.Unlock()
	next[0].wake <- next // the pipeline stays in flight, led by its first caller
}

// withdraw takes p out of route's waiting calls; false when it is no
// longer there (a pipeline took it).
func (g *grouper) withdraw(route string, p *pending) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	r := g.routes[route]
	if r == nil {
		return false
	}
	for i, o := range r.waiting {
		if o == p {
			r.waiting = append(r.waiting[:i], r.waiting[i+1:]...)
			return true
		}
	}
	return false
}

// onceCmd is a command go-redis sends at most once: a pipeline holding
// one is not retried (see the top of this file).
type onceCmd struct{ *redis.Cmd }

func (onceCmd) NoRetry() bool { return true }

// send runs the enqueue script of every call of ps, all of route, in one
// pipeline, and leaves each reply or error in its call. With MinReplicas,
// the pipeline goes to the route's master and ends with the sync write and
// one WAIT; a call whose message is stored (now or before) gets a
// *NotReplicatedError when too few replicas confirm.
func (q *Queue) send(ctx context.Context, route string, ps []*pending) {
	var c redis.Cmdable = q.rdb
	if q.minReplicas > 0 {
		node, err := q.masterFor(ctx, ps[0].keys[0])
		if err != nil {
			for _, p := range ps {
				p.err = err
			}
			return
		}
		c = node
	}
	todo := ps
	for attempt := 0; len(todo) > 0; attempt++ {
		cmds, wait := q.pipeline(ctx, c, route, todo)
		var noscript []*pending
		stored := false
		for i, p := range todo {
			p.res, p.err = scriptReply(cmds[i])
			switch {
			case p.err != nil && redis.HasErrorPrefix(p.err, "NOSCRIPT"):
				noscript = append(noscript, p)
			case wait != nil && p.err == nil:
				p.err = q.replicated(p, wait)
			}
			stored = stored || storedNow(p.res, p.err)
		}
		if stored {
			q.notify(route)
		}
		// NOSCRIPT: a fresh or restarted Redis ran none of those scripts;
		// load it and send them again, once.
		if len(noscript) == 0 || attempt > 0 {
			break
		}
		if err := enqueueScript.Load(ctx, c).Err(); err != nil {
			break // each keeps its NOSCRIPT error: not run
		}
		todo = noscript
	}
	if cc, ok := q.rdb.(*redis.ClusterClient); ok {
		for _, p := range ps {
			if staleLayout(p.err, q.minReplicas > 0) {
				// Have the cluster client learn the slot owners for the
				// retry (in the background: ReloadState does not wait).
				cc.ReloadState(ctx)
				break
			}
		}
	}
}

// staleLayout reports whether err, an enqueue's error on a Redis Cluster,
// may come from the cluster client's outdated view of which node serves
// the route's slot, so that the layout should be read again.
//
// go-redis reloads the layout when a MOVED reply comes, when a retried
// command fails over to another node, and every ClusterStateReloadInterval.
// A script is sent once (onceCmd), so an error reaching a node that died
// (a refused or timed-out dial, a broken connection) is returned as is and
// reloads nothing: without this, an instance sending only enqueues would
// keep sending a dead master's slots to its address after a replica took
// over, until the next periodic reload. Any error that is not a Redis reply
// therefore asks for a reload. With MinReplicas the scripts go to the node
// client of the master (direct), which follows no MOVED either: then any
// error but an answer about the message does.
func staleLayout(err error, direct bool) bool {
	switch {
	case err == nil, isAnswer(err), errors.Is(err, errWithdrawn):
		return false
	case direct:
		return true
	}
	var reply redis.Error
	return !errors.As(err, &reply)
}

// pipeline sends the scripts of ps on c, then, with MinReplicas, the sync
// write and WAIT (queueWait), whose command it returns.
func (q *Queue) pipeline(ctx context.Context, c redis.Cmdable, route string, ps []*pending) ([]*redis.Cmd, *redis.Cmd) {
	pipe := c.Pipeline()
	cmds := make([]*redis.Cmd, len(ps))
	for i, p := range ps {
		args := make([]any, 0, 3+len(p.keys)+len(p.args))
		args = append(args, "evalsha", enqueueScript.Hash(), len(p.keys))
		for _, k := range p.keys {
			args = append(args, k)
		}
		args = append(args, p.args...)
		cmds[i] = redis.NewCmd(ctx, args...)
		cmds[i].SetFirstKeyPos(3)
		_ = pipe.Process(ctx, onceCmd{cmds[i]})
	}
	var wait *redis.Cmd
	if q.minReplicas > 0 {
		wait = q.queueWait(ctx, pipe, route)
	}
	_, _ = pipe.Exec(ctx) // errors are read per command
	return cmds, wait
}

// scriptReply is the reply of an enqueue script sent in a pipeline. When
// the connection breaks partway through the replies, go-redis sets its
// error on every command of the pipeline, those whose replies it had read
// included; a reply read is a reply all the same (the script's is never
// nil), and its caller is told what it says.
func scriptReply(cmd *redis.Cmd) ([]any, error) {
	if res, ok := cmd.Val().([]any); ok {
		return res, nil
	}
	return cmd.Slice()
}

// replicated is the outcome of p, whose script answered, once WAIT has
// counted the replicas: nil, or a *NotReplicatedError for a message that
// is stored, or the WAIT's failure. A full queue stored nothing, so it
// waits for no replica.
func (q *Queue) replicated(p *pending, wait *redis.Cmd) error {
	if len(p.res) > 0 {
		if code, _ := p.res[0].(int64); code < 0 {
			return nil
		}
	}
	n, err := wait.Int()
	if err != nil {
		return fmt.Errorf("WAIT: %w", err)
	}
	return q.shortOfReplicas(p.id, n)
}

// isAnswer reports whether err is an answer about the message rather than
// a failure to reach Redis: too few replicas.
func isAnswer(err error) bool {
	var nr *NotReplicatedError
	return errors.As(err, &nr)
}
