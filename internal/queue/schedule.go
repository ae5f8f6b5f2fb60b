package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
)

// Scheduled sending (send_at) needs no structure of its own: the ready set
// is ordered by due time, so a scheduled message is stored like any other
// with its send_at as its due time and the status "scheduled", and the
// claim script takes it when it is due (setting "sending", which ends the
// time it can be cancelled). Cancelling is the one new step.

// ErrNotScheduled means a message exists but is no longer scheduled: a
// worker took it, or it was cancelled already. Its status is in the error.
type ErrNotScheduled struct{ Status string }

func (e *ErrNotScheduled) Error() string { return "message is " + e.Status + ", not scheduled" }

// cancelScript cancels a scheduled message that no worker has taken.
//
// KEYS[1] msg hash, KEYS[2] events list, KEYS[3] ready zset,
// KEYS[4] waiting counters hash
// ARGV[1] id, ARGV[2] app, ARGV[3] now (ms), ARGV[4] retention (ms),
// ARGV[5] event (JSON)
// A cancelled message no longer waits: it leaves the waiting counters.
// Returns {1, "cancelled"}; {0, ""} when there is no such message of that
// app; {2, status} when it is not scheduled (any more).
var cancelScript = script(uncountLua + `
local h = redis.call("HMGET", KEYS[1], $F_APP, $F_STATUS)
if not h[1] or h[1] ~= ARGV[2] then return {0, ""} end
if h[2] ~= $S_SCHEDULED then return {2, h[2]} end
if redis.call("ZREM", KEYS[3], ARGV[1]) == 0 then return {2, h[2]} end
uncount(KEYS[1], KEYS[4])
redis.call("HSET", KEYS[1], $F_STATUS, $S_CANCELLED, $F_UPDATED_AT, ARGV[3])
redis.call("HDEL", KEYS[1], $F_BODY)
redis.call("RPUSH", KEYS[2], ARGV[5])
redis.call("PEXPIRE", KEYS[1], ARGV[4])
redis.call("PEXPIRE", KEYS[2], ARGV[4])
return {1, "cancelled"}
`)

// Cancel cancels app's scheduled message id on route. It returns
// ErrNotFound when route holds no such message of app, and
// *ErrNotScheduled when the message is past being scheduled. A cancelled
// message keeps its status for the retention, without its body.
func (q *Queue) Cancel(ctx context.Context, route, app, id string) error {
	if !ValidID(id) {
		return ErrNotFound
	}
	now := q.now()
	event, _ := json.Marshal(Event{At: now, Status: StatusCancelled, Detail: "cancelled before it was due"})
	rk := q.route(route)
	res, err := cancelScript.Run(ctx, q.rdb, []string{rk.Msg(id), rk.Events(id), rk.Ready(), rk.Waiting()},
		id, app, now.UnixMilli(), q.retention.Milliseconds(), string(event)).Slice()
	if err != nil {
		return fmt.Errorf("cancel %s: %w", id, err)
	}
	if len(res) != 2 {
		return fmt.Errorf("cancel %s: unexpected reply %v", id, res)
	}
	status, _ := res[1].(string)
	switch res[0] {
	case int64(1):
		return nil
	case int64(0):
		return ErrNotFound
	}
	return &ErrNotScheduled{Status: status}
}

// IsNotScheduled reports whether err is an *ErrNotScheduled.
func IsNotScheduled(err error) bool {
	var ns *ErrNotScheduled
	return errors.As(err, &ns)
}
