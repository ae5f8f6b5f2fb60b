// Package queue stores accepted messages durably in Redis and hands them to
// delivery workers with at-least-once semantics.
//
// # Design
//
// Every key of one route shares the hash tag {route}, so each Lua script
// touches a single slot and the design stays valid on Redis Cluster (the
// convention of hibiken/asynq). Package keys names them; for a route R and
// prefix P:
//
//	P:{R}:msg:<id>       hash: the stored bytes, envelope, app, status, attempts, …
//	P:{R}:ev:<id>        list: the message's events, JSON, oldest first
//	P:{R}:ready          zset: ids waiting, scored by the time they are due (ms)
//	P:{R}:inflight       zset: ids taken by a worker, scored by the lease deadline (ms)
//	P:{R}:failed         zset: failed ids (dead letters), scored by when they failed
//	P:{R}:idem:<app>:<h> string: the id first answered for an Idempotency-Key
//	P:{R}:lane:<L>       zset: the ready ids of one lane (sender), scored by due
//	P:{R}:lanes          zset: lanes holding ready ids, scored by when each may send next
//	P:{R}:lane-wait      hash: lane → the time (ms) before which it may not send
//	P:{R}:waiting        hash: bytes, and per app messages and bytes, that wait
//
// Every script names every key it touches in KEYS, as Redis Cluster
// requires, except the claim, delete, requeue and migrate scripts' lane and
// message keys (see Lanes); the field names and status values the scripts use are the Go
// constants of this package, written into the script text (see script).
//
// Enqueue writes the hash, the first event, the ready entry and the
// idempotency record in one script: a message is either wholly stored and
// queued or not at all, and the API answers 202 only after the script
// returned. Concurrent enqueues of one route travel to Redis together, as
// one pipeline of such scripts, each still atomic on its own (group.go,
// which also says what a caller is told when Redis fails mid-pipeline).
// Durability beyond that is Redis's: run it with `appendonly yes` and
// `appendfsync always` (with `everysec` a crash of the Redis host can lose
// the last second of accepted messages).
//
// # Lanes: what waits for a mailbox is not claimed
//
// Exchange's limits belong to a mailbox, and on a "{from}" route each
// sender is its own mailbox. ready is the record of what waits (counts,
// admin, scores); beside it each message sits in the lane of its sender
// (fieldLane, the envelope sender lower-cased), and lanes orders the lanes
// by when each may send next: its first message's due time, never before a
// wait recorded in lane-wait. Claim takes the first lane whose time has
// come and up to N of its due messages. When a limit, a quota or a slot
// says "not before T", Complete with Outcome.LaneWaits moves the lane's
// time to T in the same script and the message keeps its place; none of
// the lane's other messages is claimed before T. Before lanes, each of them
// was claimed, checked and handed back in turn: 3,000 messages waiting for
// one mailbox's 30 a minute cost about 28,500 Redis commands a second.
// After a take, a lane's time is at least now, so a backlog takes turns
// with other senders instead of holding them up. A scheduled message is
// simply due later in its lane.
//
// An idle worker waits (Wait) until the first lane's time, or until this
// process queues a message, at most a second, instead of polling.
//
// A script that removes an id from ready alone (a cancel) needs no care:
// Claim drops lane entries whose id is no longer in ready. A script that
// adds one must use laneFns' enlane; Migrate, run at startup, puts ids of
// ready that are in no lane (queued by a version before lanes) into theirs.
//
// Claim, in one script, first hands every expired lease back (a worker that
// dies mid-delivery therefore loses nothing, and the next claim after its
// visibility timeout takes the message over), then moves the ids it takes
// from ready and their lane to inflight with a lease deadline and a random
// lease token. The lane and message keys it picks cannot be named in KEYS in
// advance: the script derives them from prefixes that package keys gives,
// all under the route's hash tag, so it stays on the route's one slot (Redis
// does not enforce the declaration; Cluster routes by KEYS[1]). A worker
// still delivering extends its lease; every later change (Extend, Complete)
// carries the lease token and is refused once the lease was lost, so a slow
// worker cannot overwrite the outcome recorded by the worker that took over.
// The price of at-least-once is that a worker which dies between the SMTP
// server's 250 and its acknowledgment causes a second delivery; the stored
// bytes carry the same Message-ID so receivers can deduplicate.
//
// Finished messages (sent or failed) expire after the retention period; the
// body of a sent message is dropped at once, a failed one keeps it so an
// operator can re-queue it. The failed set, which only lists ids, is pruned
// of the expired ones whenever the depth is read (admin.go).
//
// # Limits
//
// So that Redis cannot grow without bound, a route and each app's share of
// it have a limit on what waits: messages queued, scheduled, deferred or
// being delivered, in count and bytes (Limits). Failed messages do not
// count: they no longer wait, and the retention bounds them. The enqueue
// script checks the limits and stores the message in one step, so
// concurrent submissions from every instance cannot overshoot; a refused
// message leaves nothing behind.
//
// The route's message count is not a counter at all: it is ZCARD ready +
// ZCARD inflight, true by construction. Bytes, and an app's messages and
// bytes, cannot be read off a zset, so they are counters in the route's
// waiting hash (the app's too, so the script stays in the route's slot).
// A counter is only ever changed by the script that moves a message in or
// out of ready ∪ inflight, in the same atomic step: enqueue (a scheduled
// message too: it waits in ready for its time) and requeue add it; complete
// (sent or failed, including max_age), delete and cancel take it away;
// claim, reclaim and deferrals move it between ready and inflight and leave
// the counters alone. A worker killed mid-delivery leaves its message in
// inflight, still counted, until reclaim hands it back; a Redis restart
// replays whole scripts from the AOF, counters and message together.
//
// Two guards keep a counter from drifting upwards even so (a message whose
// hash vanished outside mailgate, a future script that forgets the
// counters), because a counter stuck high would keep a route "full" for
// ever. First, a counted message carries its size in its waiting_bytes
// field and the decrement removes it, so no message is taken away twice
// and one never counted is never taken away. Second, the enqueue script
// clears the counters whenever ready and inflight are both empty, when
// nothing can be waiting: any error lasts at most until the route drains,
// and a route refusing new messages does drain. A periodic recount was the
// alternative; it cannot be atomic without a script reading every message
// of the route, and it would race with the scripts it corrects.
package queue
