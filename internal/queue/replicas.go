package queue

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// NotReplicatedError means the message was stored on the master but fewer
// replicas than Options.MinReplicas confirmed it within
// Options.ReplicaTimeout. It may survive or may be lost if the master fails
// now; a retry with the same id or Idempotency-Key is safe and settles it.
type NotReplicatedError struct {
	ID        string
	Want, Got int
	Timeout   time.Duration
}

func (e *NotReplicatedError) Error() string {
	return fmt.Sprintf("message %s stored but acknowledged by %d of the %d replicas asked for within %s",
		e.ID, e.Got, e.Want, e.Timeout)
}

// confirmReplicated waits for the replicas after a plain read found the
// message stored (EnqueueRetrying's last word).
func (q *Queue) confirmReplicated(ctx context.Context, route, id string) error {
	node, err := q.masterFor(ctx, q.route(route).ReplicaSync())
	if err != nil {
		return err
	}
	pipe := node.Pipeline()
	wait := q.queueWait(ctx, pipe, route)
	_, _ = pipe.Exec(ctx)
	n, err := wait.Int()
	if err != nil {
		return err
	}
	return q.shortOfReplicas(id, n)
}

// queueWait queues on pipe, which goes to route's master, a write to the
// route's sync key and a WAIT for MinReplicas, and returns the WAIT.
//
// The sync write goes before WAIT because what was sent before it may
// have written nothing (an idempotent replay, or a repeat of a call whose
// reply was lost), and WAIT would then measure whatever this pooled
// connection wrote last; the replication stream is ordered, so a replica
// that has the sync write has everything written before it too.
func (q *Queue) queueWait(ctx context.Context, pipe redis.Pipeliner, route string) *redis.Cmd {
	pipe.Set(ctx, q.route(route).ReplicaSync(), strconv.FormatInt(q.now().UnixMilli(), 10), time.Minute)
	return pipe.Do(ctx, "WAIT", q.minReplicas, q.replicaTimeout.Milliseconds())
}

// shortOfReplicas is nil when n replicas are enough, else the
// *NotReplicatedError of message id.
func (q *Queue) shortOfReplicas(id string, n int) error {
	if n < q.minReplicas {
		return &NotReplicatedError{ID: id, Want: q.minReplicas, Got: n, Timeout: q.replicaTimeout}
	}
	return nil
}

// masterFor is the client of the master that holds key: the cluster's node
// for its slot, or the one client of a single node or Sentinel set-up.
func (q *Queue) masterFor(ctx context.Context, key string) (redis.Cmdable, error) {
	switch c := q.rdb.(type) {
	case *redis.ClusterClient:
		return c.MasterForKey(ctx, key)
	case redis.Cmdable:
		return c, nil
	}
	return nil, errors.New("queue: unsupported Redis client")
}

// confirmMany waits for the replicas of every message of out that is
// stored (Err nil), once per route: one sync write and one WAIT on the
// route's master cover every message stored there before it, since the
// replication stream is ordered. The messages of a route whose replicas
// do not confirm get a *NotReplicatedError, each with its own id.
func (q *Queue) confirmMany(ctx context.Context, ms []Message, out []EnqueueResult) {
	if q.minReplicas <= 0 {
		return
	}
	confirmed := map[string]error{}
	for i, r := range out {
		if r.Err != nil {
			continue
		}
		route := ms[i].Route
		err, done := confirmed[route]
		if !done {
			err = q.confirmReplicated(ctx, route, ms[i].ID)
			confirmed[route] = err
		}
		var nr *NotReplicatedError
		switch {
		case err == nil:
		case errors.As(err, &nr):
			e := *nr
			e.ID = ms[i].ID
			out[i] = EnqueueResult{ID: ms[i].ID, Err: &e}
		default:
			out[i] = EnqueueResult{ID: ms[i].ID, Err: fmt.Errorf("enqueue %s: WAIT: %w", ms[i].ID, err)}
		}
	}
}
