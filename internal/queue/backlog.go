package queue

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Backlog is a route's Depth and the due time of its earliest waiting
// message (HasDue false when none waits), for the metrics. The ready set is
// scored by due time, so that message is its first member.
//
// A message's creation time is not what matters here: a deferred message
// is not late while its backoff runs. How long the head of the ready set
// has been due is how far the workers lag behind (or how long a held route
// has kept its mail).
type Backlog struct {
	Depth
	OldestDue time.Time
	HasDue    bool
}

// Backlog reads route's Depth and its earliest due time in one pipelined
// round trip (Depth's three counts, its bytes and one ZRANGE), whatever the
// queue's size, after pruning the failed set of expired ids (PruneFailed,
// one more round trip of bounded work), so the failed count is true.
func (q *Queue) Backlog(ctx context.Context, route string) (Backlog, error) {
	if _, err := q.PruneFailed(ctx, route); err != nil {
		return Backlog{}, fmt.Errorf("backlog of %s: %w", route, err)
	}
	pipe := q.rdb.Pipeline()
	rk := q.route(route)
	r := pipe.ZCard(ctx, rk.Ready())
	i := pipe.ZCard(ctx, rk.Inflight())
	f := pipe.ZCard(ctx, rk.Failed())
	by := pipe.HGet(ctx, rk.Waiting(), waitingBytes)
	head := pipe.ZRangeWithScores(ctx, rk.Ready(), 0, 0)
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return Backlog{}, fmt.Errorf("backlog of %s: %w", route, err)
	}
	b := Backlog{Depth: Depth{Ready: r.Val(), InFlight: i.Val(), Failed: f.Val()}}
	if b.Ready+b.InFlight > 0 { // else the counters are stale: the next enqueue clears them
		b.Bytes, _ = by.Int64()
	}
	if z := head.Val(); len(z) == 1 {
		b.OldestDue, b.HasDue = time.UnixMilli(int64(z[0].Score)), true
	}
	return b, nil
}
