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
//
// Every script names every key it touches in KEYS, as Redis Cluster
// requires; the field names and status values the scripts use are the Go
// constants of this package, written into the script text (see script).
//
// Enqueue writes the hash, the first event, the ready entry and the
// idempotency record in one script: a message is either wholly stored and
// queued or not at all, and the API answers 202 only after the script
// returned. Durability beyond that is Redis's: run it with
// `appendonly yes` and `appendfsync always` (with `everysec` a crash of the
// Redis host can lose the last second of accepted messages).
//
// Claim moves one due id from ready to inflight with a lease deadline and a
// random lease token, after returning every expired lease to ready (one
// script per message, since each must name the message's keys): a worker that dies mid-delivery therefore loses nothing, and the
// next claim after its visibility timeout takes the message over. A worker
// still delivering extends its lease; every later change (Extend, Complete)
// carries the lease token and is refused once the lease was lost, so a slow
// worker cannot overwrite the outcome recorded by the worker that took over.
// The price of at-least-once is that a worker which dies between the SMTP
// server's 250 and its acknowledgment causes a second delivery; the stored
// bytes carry the same Message-ID so receivers can deduplicate.
//
// Finished messages (sent or failed) expire after the retention period; the
// body of a sent message is dropped at once, a failed one keeps it so an
// operator can re-queue it.
package queue
