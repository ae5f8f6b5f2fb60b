package queue

import (
	"context"
	"fmt"
	"time"
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
// round trip (Depth's three counts and one ZRANGE), whatever the queue's size.
func (q *Queue) Backlog(ctx context.Context, route string) (Backlog, error) {
	pipe := q.rdb.Pipeline()
	rk := q.route(route)
	r := pipe.ZCard(ctx, rk.Ready())
	i := pipe.ZCard(ctx, rk.Inflight())
	f := pipe.ZCard(ctx, rk.Failed())
	head := pipe.ZRangeWithScores(ctx, rk.Ready(), 0, 0)
	if _, err := pipe.Exec(ctx); err != nil {
		return Backlog{}, fmt.Errorf("backlog of %s: %w", route, err)
	}
	b := Backlog{Depth: Depth{Ready: r.Val(), InFlight: i.Val(), Failed: f.Val()}}
	if z := head.Val(); len(z) == 1 {
		b.OldestDue, b.HasDue = time.UnixMilli(int64(z[0].Score)), true
	}
	return b, nil
}
