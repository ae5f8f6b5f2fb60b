// Package limits keeps Exchange Online's per-mailbox submission limits across
// every mailgate instance that shares one Redis.
//
// Exchange Online allows a mailbox that submits over SMTP AUTH at most 3
// concurrent connections (a fourth is answered `432 4.3.2 Concurrent
// connections limit exceeded`), 30 messages a minute (extra ones are delayed)
// and 10,000 recipients in a rolling 24 hours (past that every submission is
// refused with `554 5.2.0 ...SubmissionQuotaExceededException`, and a
// mailbox that keeps hitting an error can be blocked from SMTP AUTH for a
// while). See
// https://learn.microsoft.com/office365/servicedescriptions/exchange-online-service-description/exchange-online-limits
// and docs/exchange-online.md, "Per-mailbox limits of SMTP AUTH". Those limits
// belong to the mailbox, not to a process: two or ten mailgate instances must
// together stay below them, so the state lives in Redis and every decision is
// taken by one atomic Lua script.
//
// A message that is over a limit is not failed and does not use up a
// delivery attempt: every check answers how long to wait, and the caller hands
// the message back to the queue with that due time. Only a message that can
// never be admitted (more recipients than the whole daily limit) is an error,
// [ErrTooManyRecipients].
//
// # Keys
//
// Every key of one mailbox of one route shares the hash tag {route:mailbox}
// (the mailbox lower-cased), so each script touches a single slot and the
// design stays valid on Redis Cluster, the convention of hibiken/asynq and of
// package queue; package keys names them. For prefix P:
//
//	P:limits:{R:M}:conns       zset: lease id → lease expiry (ms)
//	P:limits:{R:M}:log         zset: "<recipients>:<id>" → admission time (ms)
//	P:limits:{R:M}:rcpts       string: sum of the recipients in log
//	rate:P:limits:{R:M}:gcra   string: redis_rate's theoretical arrival time
//
// (redis_rate puts its own "rate:" in front of the key it is given; the hash
// tag is unaffected.) Route names cannot contain ':' or braces (see
// config.routeNameRE), so {R:M} is unambiguous.
//
// # Connections: leases in a sorted set
//
// Each open SMTP connection holds a lease: a random id in the mailbox's conns
// set, scored by its expiry. AcquireConn runs one script that drops expired
// leases, counts the rest and adds the new one only when fewer than max are
// left. A counter (INCR/DECR) would be simpler but leaks a slot for good each
// time a process dies between connecting and closing; a lease instead frees
// itself after its TTL. The price is that the holder must renew it while the
// connection is open (every ttl/3 is the usual rhythm), and that an instance
// whose clock runs ahead of another's by more than the remaining lifetime of
// that instance's lease (at least 2/3 of the TTL when renewed every ttl/3)
// would drop it early: keep clocks synchronised to well within the TTL (the
// delivery workers use 15-second slot leases, renewed every 5 seconds; see
// slotTTL in internal/delivery, so NTP-level agreement is needed). Renew
// succeeds as long as the lease id is still in the set, even after its expiry,
// because any acquire after the expiry would have removed it first; when it
// was removed, Renew reports [ErrLeaseLost] and the caller must close the
// connection.
//
// When all slots are taken the wait is the time until the earliest lease
// expires, capped at one second: leases are renewed while their connections
// live, so their expiry says little about when a slot frees up, and a
// connection that closes normally frees its slot at once.
//
// # Messages per minute: GCRA, spaced evenly
//
// The per-minute limit is the GCRA of github.com/go-redis/redis_rate, a
// well-kept implementation (one string per key), with burst 1, run inside
// the admit script. Burst 1 spaces admissions
// evenly instead of letting 30 go at once: a burst of n followed by the
// refill rate can put up to 2n-1 messages into one rolling minute, while
// evenly spaced admissions can never exceed n. redis_rate reads the Redis
// server's clock (TIME), not the injected clock; that is right for a limit
// shared between instances (one clock for all of them), and it is why the
// per-minute tests run on the real clock.
//
// Window boundary: with a period of exactly 60 s the spacing is 2 s, so a
// half-open window [t, t+60 s) holds at most 30 admissions, but a closed
// window [t, t+60 s] holds 31 when they fall on t, t+2 s, ..., t+60 s. Nobody
// tells how Exchange bounds its minute, redis_rate stores its arrival time
// rounded to 10 µs (Lua's "%.14g"), and Exchange counts a message a little
// later than mailgate admits it, by an amount that differs per message. So
// the period is 61 s: n admissions per 61 s are spaced 61/n s apart (2.033 s
// for 30), any 31 of them span at least 61 s minus the rounding, and no 60 s
// window, open or closed, can hold more than 30 even when the delays between
// admission and Exchange's count differ by up to a second. The cost is 1.6 %
// of the throughput. A large message whose DATA takes several seconds longer
// than its neighbours' can still shift its count further; Exchange delays
// rather than refuses such a message, so no more margin is spent on it.
//
// # Recipients per day: an exact log
//
// GCRA is the wrong tool for the daily limit: it would let a full burst
// through and then refill continuously, so a rolling 24 hours could see far
// more than 10,000 recipients, and Exchange refuses rather than delays past
// the limit. Instead every admitted message is one entry in the log set,
// scored by the admission time from the injected clock, with its recipient
// count in the member; a running sum beside it avoids adding up thousands of
// entries on every admission (it is recomputed from the log if it is ever
// missing). The script drops entries older than the window, and when the sum
// plus the new recipients is over the limit it answers the time until the
// oldest entries that make enough room leave the window: exact, not an
// estimate. Every entry counts at least one recipient, so with a daily limit
// the log never holds more entries than the limit (10,000); with only the
// per-minute limit it holds a day of messages (43,000 at 30 a minute).
//
// The window is 24 hours plus 5 minutes. Exchange counts the recipients when
// it accepts the message, a few seconds to a few minutes after mailgate
// admitted it (a 35 MB DATA takes time), and instances' clocks differ; without
// the margin a message admitted just as an old one leaves mailgate's window
// could land in Exchange's window while the old one is still in it.
//
// # Order inside AdmitMessage
//
// A message refused by one limit must not use up the other's budget.
// AdmitMessage runs one script (admitScript) that (1) checks the daily log
// without recording, (2) runs the GCRA, which consumes a slot only when it
// admits, and (3) records the recipients. A message over the daily limit is
// therefore refused before it touches the per-minute budget: that matters,
// because once the daily budget is spent every queued message comes back
// and would otherwise burn a 2 s slot each. A message refused by the GCRA
// records no recipients. Being one script, nothing runs between the steps,
// and the whole admission is one round trip. The GCRA in it is redis_rate's
// own algorithm (allowN with burst 1), on the same key with the same stored
// value and the same clock (Redis's TIME), so the state written by earlier
// versions, which called redis_rate, carries over.
//
// The log doubles as the admission history for [Limiter.Usage] (messages in
// the last minute), so it is kept whenever either message limit is set; with
// both at 0 AdmitMessage does not touch Redis.
package limits
