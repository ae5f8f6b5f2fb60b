package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Dead letters: what an operator may do with a route's failed messages.
//
// A failed message keeps its hash, body included, and its events until the
// retention ends (completeScript), and its id stays in P:{R}:failed scored
// by when it failed. Requeue gives such a message a new life: the retention
// TTL is removed, it is queued again now, and its history is kept — the
// attempts so far, the events, the last SMTP reply — with one more event
// saying an operator requeued it. Because delivery.max_age counts from
// created_at, a requeued message that is days old would fail on its first
// temporary error; Requeue therefore records requeued_at, and Claim hands
// that to the worker as the start of max_age instead.
//
// The failed set is only a list of ids; a hash that expired leaves its id
// behind. Depth prunes the ids whose retention has ended (PruneFailed), so
// the failed count of the metrics and of GET /v1/routes stays true, and
// ListFailed and the bulk operations remove any other id whose message is
// gone when they meet it, so it never shows and never counts twice.

// ErrInFlight means the message is being delivered right now and cannot be
// changed until its attempt is recorded.
var ErrInFlight = errors.New("the message is being delivered right now")

// BulkBatch is how many messages RequeueAll and DeleteAll change per round
// trip to Redis.
const BulkBatch = 100

// requeueScript queues a failed message again.
//
// KEYS[1] msg hash, KEYS[2] events list, KEYS[3] failed zset, KEYS[4] ready zset,
// KEYS[5] lanes zset, KEYS[6] lane-wait hash, KEYS[7] waiting counters hash
// ARGV[1] id, ARGV[2] now (ms), ARGV[3] event (JSON), ARGV[4] lane key prefix
// It counts the message as waiting again, but does not check the limits: an
// operator's requeue is a decision, and the message is in Redis already.
// Returns 1 when requeued; 0 when there is no failed message with that id
// (its id, if still in the failed set, is removed); -1 when it is failed but
// its body is gone, so it cannot be sent again (it stays listed).
var requeueScript = script(countLua + `
local lp, lanes, lanewait = ARGV[4], KEYS[5], KEYS[6]
` + laneFns + `
local st = redis.call("HGET", KEYS[1], $F_STATUS)
if st ~= $S_FAILED then
  redis.call("ZREM", KEYS[3], ARGV[1])
  return 0
end
if redis.call("HEXISTS", KEYS[1], $F_BODY) == 0 then return -1 end
redis.call("ZREM", KEYS[3], ARGV[1])
redis.call("PERSIST", KEYS[1])
redis.call("PERSIST", KEYS[2])
redis.call("HSET", KEYS[1], $F_STATUS, $S_QUEUED, $F_LEASE, "", $F_UPDATED_AT, ARGV[2], $F_REQUEUED_AT, ARGV[2])
redis.call("HDEL", KEYS[1], $F_DUE_AT)
redis.call("RPUSH", KEYS[2], ARGV[3])
redis.call("LTRIM", KEYS[2], -200, -1)
redis.call("ZADD", KEYS[4], ARGV[2], ARGV[1])
enlane(lane_of(KEYS[1]), ARGV[1], ARGV[2])
if redis.call("HEXISTS", KEYS[1], $F_WAITING_BYTES) == 0 then
  count(KEYS[1], KEYS[7], redis.call("HGET", KEYS[1], $F_APP), redis.call("HSTRLEN", KEYS[1], $F_BODY))
end
return 1
`)

// deleteScript removes a message that no worker holds: its hash, its events
// and its entries in ready and failed.
//
// KEYS[1] msg hash, KEYS[2] events list, KEYS[3] ready zset,
// KEYS[4] inflight zset, KEYS[5] failed zset, KEYS[6] waiting counters hash
// ARGV[1] id, ARGV[2] "1" to delete only a failed message, else "0",
// ARGV[3] lane key prefix (its entry in its lane goes too; one left behind
// would only be dropped by the next claim)
// A message that was waiting leaves the waiting counters.
// Returns 1 when deleted; 0 when there is no such message (or, with
// ARGV[2] "1", it is no longer failed); -1 when a worker holds it.
var deleteScript = script(uncountLua + `
local st = redis.call("HGET", KEYS[1], $F_STATUS)
if not st then
  redis.call("DEL", KEYS[2])
  redis.call("ZREM", KEYS[3], ARGV[1])
  redis.call("ZREM", KEYS[5], ARGV[1])
  return 0
end
if st == $S_SENDING or redis.call("ZSCORE", KEYS[4], ARGV[1]) then return -1 end
if ARGV[2] == "1" and st ~= $S_FAILED then return 0 end
local lp, lanes, lanewait = ARGV[3], nil, nil
` + laneFns + `
redis.call("ZREM", lp .. lane_of(KEYS[1]), ARGV[1])
uncount(KEYS[1], KEYS[6])
redis.call("DEL", KEYS[1], KEYS[2])
redis.call("ZREM", KEYS[3], ARGV[1])
redis.call("ZREM", KEYS[5], ARGV[1])
return 1
`)

// ErrBadCursor means a ListFailed cursor was not one ListFailed returned.
var ErrBadCursor = errors.New("invalid cursor")

// ListFailed returns up to limit failed messages of route, newest failure
// first, starting after cursor ("" for the newest). next is the cursor of
// the following page, "" when there is none. Ids whose message expired are
// removed from the failed set on the way.
func (q *Queue) ListFailed(ctx context.Context, route string, limit int, cursor string) (page []Status, next string, err error) {
	if limit <= 0 {
		return nil, "", fmt.Errorf("list failed of %s: limit must be positive", route)
	}
	// The cursor is the (score, id) of the last message examined. Members
	// of equal score come in reverse lexical order, so it is exact even when
	// many messages failed in the same millisecond.
	curScore, curID, err := parseCursor(cursor)
	if err != nil {
		return nil, "", err
	}
	key := q.route(route).Failed()
	page = []Status{}
	max, offset := curScore, int64(0)
	for {
		batch, err := q.rdb.ZRevRangeByScoreWithScores(ctx, key, &redis.ZRangeBy{
			Max: max, Min: "-inf", Offset: offset, Count: int64(limit + 1)}).Result()
		if err != nil {
			return nil, "", fmt.Errorf("list failed of %s: %w", route, err)
		}
		if len(batch) == 0 {
			return page, "", nil
		}
		var stale []any
		examined, more := false, false
		for _, z := range batch {
			id, _ := z.Member.(string)
			score := strconv.FormatInt(int64(z.Score), 10)
			if curID != "" && score == curScore && id >= curID {
				continue // at or before the cursor
			}
			if len(page) == limit {
				more = true
				break
			}
			st, err := q.Get(ctx, route, id)
			switch {
			case errors.Is(err, ErrNotFound):
				stale = append(stale, id)
			case err != nil:
				return nil, "", fmt.Errorf("list failed of %s: %w", route, err)
			default:
				page = append(page, *st)
			}
			curScore, curID, examined = score, id, true
		}
		if len(stale) > 0 {
			if err := q.rdb.ZRem(ctx, key, stale...).Err(); err != nil {
				return nil, "", fmt.Errorf("prune failed of %s: %w", route, err)
			}
		}
		if len(page) == limit {
			if !more {
				if more, err = q.hasOlder(ctx, key, curScore, curID); err != nil || !more {
					return page, "", err
				}
			}
			return page, curScore + "-" + curID, nil
		}
		if examined {
			max, offset = curScore, 0
		} else {
			// Every member of this batch shares the cursor's score and was
			// already examined: look further along the same score.
			offset += int64(len(batch))
		}
	}
}

// hasOlder reports whether the failed set holds a member after the cursor
// (score, id).
func (q *Queue) hasOlder(ctx context.Context, key, score, id string) (bool, error) {
	for offset := int64(0); ; offset += BulkBatch {
		zs, err := q.rdb.ZRevRangeByScoreWithScores(ctx, key, &redis.ZRangeBy{
			Max: score, Min: "-inf", Offset: offset, Count: BulkBatch}).Result()
		if err != nil {
			return false, fmt.Errorf("list failed: %w", err)
		}
		for _, z := range zs {
			if m, _ := z.Member.(string); strconv.FormatInt(int64(z.Score), 10) != score || m < id {
				return true, nil
			}
		}
		if len(zs) < BulkBatch {
			return false, nil
		}
	}
}

// parseCursor reads a ListFailed cursor: the failure time in ms and the id
// of the last message examined, joined by "-".
func parseCursor(c string) (score, id string, err error) {
	if c == "" {
		return "+inf", "", nil
	}
	ms, id, ok := strings.Cut(c, "-")
	if _, perr := strconv.ParseInt(ms, 10, 64); !ok || perr != nil || !ValidID(id) {
		return "", "", ErrBadCursor
	}
	return ms, id, nil
}

// Requeue queues failed message id of route again, due now. Its attempts,
// events and last reply are kept, and max_age counts again from now. It
// returns ErrNotFound unless the message is failed and still has its body.
func (q *Queue) Requeue(ctx context.Context, route, id string) error {
	if !ValidID(id) {
		return ErrNotFound
	}
	keys, args := q.requeueArgs(route, id)
	r, err := requeueScript.Run(ctx, q.rdb, keys, args...).Int()
	if err != nil {
		return fmt.Errorf("requeue %s: %w", id, err)
	}
	if r != 1 {
		return ErrNotFound
	}
	q.notify(route)
	return nil
}

func (q *Queue) requeueArgs(route, id string) ([]string, []any) {
	now := q.now()
	event, _ := json.Marshal(Event{At: now, Status: StatusQueued, Detail: "requeued by an operator"})
	rk := q.route(route)
	return []string{rk.Msg(id), rk.Events(id), rk.Failed(), rk.Ready(), rk.Lanes(), rk.LaneWait(), rk.Waiting()},
		[]any{id, now.UnixMilli(), event, rk.Lane("")}
}

// Delete removes message id of route entirely — body, envelope, events —
// whatever its status, unless a worker is delivering it (ErrInFlight).
// It returns ErrNotFound when there is no such message.
func (q *Queue) Delete(ctx context.Context, route, id string) error {
	if !ValidID(id) {
		return ErrNotFound
	}
	keys, args := q.deleteArgs(route, id, false)
	r, err := deleteScript.Run(ctx, q.rdb, keys, args...).Int()
	if err != nil {
		return fmt.Errorf("delete %s: %w", id, err)
	}
	switch r {
	case 1:
		return nil
	case -1:
		return ErrInFlight
	}
	return ErrNotFound
}

func (q *Queue) deleteArgs(route, id string, onlyFailed bool) ([]string, []any) {
	flag := "0"
	if onlyFailed {
		flag = "1"
	}
	rk := q.route(route)
	return []string{rk.Msg(id), rk.Events(id), rk.Ready(), rk.Inflight(), rk.Failed(), rk.Waiting()}, []any{id, flag, rk.Lane("")}
}

// RequeueAll requeues every message of route that had failed when it was
// called, and returns how many it requeued. Messages failing meanwhile are
// left for the next call, so a route that keeps refusing them cannot keep
// the call going forever.
func (q *Queue) RequeueAll(ctx context.Context, route string) (int, error) {
	n, err := q.bulk(ctx, route, "requeue", requeueScript, func(id string) ([]string, []any) {
		return q.requeueArgs(route, id)
	})
	if n > 0 {
		q.notify(route)
	}
	return n, err
}

// DeleteAll deletes every message of route that had failed when it was
// called (and is failed still), and returns how many it deleted.
func (q *Queue) DeleteAll(ctx context.Context, route string) (int, error) {
	return q.bulk(ctx, route, "delete", deleteScript, func(id string) ([]string, []any) {
		return q.deleteArgs(route, id, true)
	})
}

// bulk runs script on a snapshot of route's failed set, BulkBatch ids per
// pipeline, and counts the ids it answered 1 for.
func (q *Queue) bulk(ctx context.Context, route, what string, script *redis.Script, args func(id string) ([]string, []any)) (int, error) {
	ids, err := q.rdb.ZRangeByScore(ctx, q.route(route).Failed(), &redis.ZRangeBy{
		Min: "-inf", Max: strconv.FormatInt(q.now().UnixMilli(), 10)}).Result()
	if err != nil {
		return 0, fmt.Errorf("%s failed of %s: %w", what, route, err)
	}
	n := 0
	for len(ids) > 0 {
		batch := ids[:min(BulkBatch, len(ids))]
		ids = ids[len(batch):]
		pipe := q.rdb.Pipeline()
		cmds := make([]*redis.Cmd, len(batch))
		for i, id := range batch {
			keys, a := args(id)
			// Eval, not Run: the NOSCRIPT fallback of Run cannot work
			// inside a pipeline, and Redis caches a script run by Eval too.
			cmds[i] = script.Eval(ctx, pipe, keys, a...)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return n, fmt.Errorf("%s failed of %s: %w", what, route, err)
		}
		for _, c := range cmds {
			if r, _ := c.Int(); r == 1 {
				n++
			}
		}
	}
	return n, nil
}

// PruneBatch is how many expired ids PruneFailed removes at most per call.
const PruneBatch = 500

// PruneFailed removes from route's failed set up to PruneBatch ids whose
// retention has ended, and returns how many it removed. Depth calls it, so
// whatever reads the depth (the metrics, GET /v1/routes) keeps the set
// pruned with bounded work per read.
//
// A message's hash expires one retention after it failed, and its score is
// when it failed, so the ids scored before now - retention are exactly the
// expired ones while the retention stays the same. After the retention is
// shortened, the hashes of earlier failures live on for their old TTL
// unlisted; after it is lengthened, their ids linger until ListFailed meets
// them or the new retention passes.
func (q *Queue) PruneFailed(ctx context.Context, route string) (int, error) {
	cutoff := q.now().Add(-q.retention).UnixMilli()
	n, err := pruneFailedScript.Run(ctx, q.rdb, []string{q.route(route).Failed()}, cutoff, PruneBatch).Int()
	if err != nil {
		return 0, fmt.Errorf("prune failed of %s: %w", route, err)
	}
	return n, nil
}
