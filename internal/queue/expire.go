package queue

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Expiry of waiting messages.
//
// A message that is attempted and deferred fails once delivery.max_age has
// passed (the worker decides that). A message that is never attempted —
// its route is held, or its mailbox waits for a quota or a limit — would
// otherwise wait for ever: a hold over a weekend piles up without bound.
// ExpireWaiting fails such messages. Its candidates come cheaply from
// ready: a message's score there is never before its start (creation or
// operator requeue), because it is always the time it became due, so only
// ids scored at or before now - max_age can have expired, and each of them
// is checked against its start by expireScript.

// ExpireBatch is how many candidates ExpireWaiting looks at per round.
const ExpireBatch = 100

// ExpireWaiting fails the messages of route that wait in ready and were
// created (or requeued) at least maxAge ago, at most limit of them, and
// returns how many it failed. detail gives the reason recorded for the
// messages of a lane. One caller of all instances does the work per period:
// the call returns 0 at once when another took the route's sweep lock
// within every.
func (q *Queue) ExpireWaiting(ctx context.Context, route string, maxAge, every time.Duration, limit int,
	detail func(lane string) string) (int, error) {
	if maxAge <= 0 {
		return 0, nil
	}
	rk := q.route(route)
	now := q.now()
	ok, err := q.rdb.SetNX(ctx, rk.ExpireLock(), now.UnixMilli(), every).Result()
	if err != nil || !ok {
		return 0, err
	}
	cutoff := now.Add(-maxAge).UnixMilli()
	n := 0
	for n < limit {
		ids, err := q.rdb.ZRangeByScore(ctx, rk.Ready(), &redis.ZRangeBy{
			Min: "-inf", Max: strconv.FormatInt(cutoff, 10), Count: ExpireBatch}).Result()
		if err != nil || len(ids) == 0 {
			return n, err
		}
		pipe := q.rdb.Pipeline()
		lanes := make([]*redis.SliceCmd, len(ids))
		for i, id := range ids {
			lanes[i] = pipe.HMGet(ctx, rk.Msg(id), fieldLane, fieldFrom)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return n, fmt.Errorf("expire waiting of %s: %w", route, err)
		}
		pipe = q.rdb.Pipeline()
		cmds := make([]*redis.Cmd, len(ids))
		for i, id := range ids {
			h := named([]string{fieldLane, fieldFrom}, lanes[i].Val())
			lane := h[fieldLane]
			if lane == "" {
				lane = laneOf(h[fieldFrom])
			}
			ev, _ := json.Marshal(Event{At: now, Status: StatusFailed, Detail: detail(lane)})
			cmds[i] = expireScript.Eval(ctx, pipe,
				[]string{rk.Msg(id), rk.Events(id), rk.Ready(), rk.Failed(), rk.Lane(lane), rk.Waiting()},
				id, now.UnixMilli(), cutoff, q.retention.Milliseconds(), string(ev))
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return n, fmt.Errorf("expire waiting of %s: %w", route, err)
		}
		failed := 0
		for _, c := range cmds {
			if r, _ := c.Int(); r == 1 {
				failed++
			}
		}
		n += failed
		if failed == 0 {
			// Every candidate was requeued recently or taken meanwhile:
			// the next round would see the same ones.
			return n, nil
		}
	}
	return n, nil
}
