package queue

// enqueueScript stores a new message and queues it.
//
// KEYS[1] msg hash, KEYS[2] events list, KEYS[3] ready zset, KEYS[4] idempotency key
// ARGV[1] id, ARGV[2] due (ms: now, or send_at for a scheduled message),
// ARGV[3] use idempotency ("1"/"0"), ARGV[4] idempotency TTL (ms),
// ARGV[5] first event (JSON), ARGV[6..] field, value pairs of the hash
// Returns {1, id} when stored now; {2, id} when this very id was stored
// already (a retried call whose first reply was lost: a no-op); {0, first
// id} when the idempotency key belongs to another message.
var enqueueScript = script(`
if ARGV[3] == "1" then
  local existing = redis.call("GET", KEYS[4])
  if existing == ARGV[1] then return {2, existing} end
  if existing then return {0, existing} end
end
if redis.call("EXISTS", KEYS[1]) == 1 then return {2, ARGV[1]} end
local fields = {}
for i = 6, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call("HSET", KEYS[1], unpack(fields))
redis.call("RPUSH", KEYS[2], ARGV[5])
redis.call("ZADD", KEYS[3], ARGV[2], ARGV[1])
if ARGV[3] == "1" then
  redis.call("SET", KEYS[4], ARGV[1], "PX", ARGV[4])
end
return {1, ARGV[1]}
`)

// reclaimScript returns one expired lease's message to ready: its worker
// stopped (or lost Redis) before finishing, and the attempt counts.
//
// KEYS[1] inflight zset, KEYS[2] ready zset, KEYS[3] msg hash, KEYS[4] events list
// ARGV[1] id, ARGV[2] now (ms), ARGV[3] "lease expired" event (JSON)
// Returns 1 when the lease was expired and taken back, else 0 (renewed or
// taken back by another worker meanwhile).
var reclaimScript = script(`
local deadline = redis.call("ZSCORE", KEYS[1], ARGV[1])
if not deadline or tonumber(deadline) > tonumber(ARGV[2]) then return 0 end
redis.call("ZREM", KEYS[1], ARGV[1])
if redis.call("EXISTS", KEYS[3]) == 1 then
  redis.call("HSET", KEYS[3], $F_LEASE, "", $F_STATUS, $S_DEFERRED, $F_UPDATED_AT, ARGV[2])
  redis.call("HINCRBY", KEYS[3], $F_ATTEMPTS, 1)
  redis.call("RPUSH", KEYS[4], ARGV[3])
  redis.call("ZADD", KEYS[2], ARGV[2], ARGV[1])
end
return 1
`)

// claimScript takes one due message, chosen by the caller from ready.
//
// KEYS[1] ready zset, KEYS[2] inflight zset, KEYS[3] msg hash
// ARGV[1] id, ARGV[2] now (ms), ARGV[3] lease deadline (ms), ARGV[4] lease token
// Returns nil when the id is no longer due in ready (another worker took
// it) or its hash is gone (deleted by an operator: the id is dropped), else
// the message's hash as a flat field/value list.
var claimScript = script(`
local due = redis.call("ZSCORE", KEYS[1], ARGV[1])
if not due or tonumber(due) > tonumber(ARGV[2]) then return nil end
redis.call("ZREM", KEYS[1], ARGV[1])
if redis.call("EXISTS", KEYS[3]) == 0 then return nil end
redis.call("ZADD", KEYS[2], ARGV[3], ARGV[1])
redis.call("HSET", KEYS[3], $F_LEASE, ARGV[4], $F_STATUS, $S_SENDING, $F_UPDATED_AT, ARGV[2])
return redis.call("HGETALL", KEYS[3])
`)

// extendScript pushes a lease deadline further while its worker still works.
//
// KEYS[1] inflight zset, KEYS[2] msg hash
// ARGV[1] id, ARGV[2] lease token, ARGV[3] new deadline (ms)
// Returns 1, or 0 when the lease was lost.
var extendScript = script(`
if redis.call("HGET", KEYS[2], $F_LEASE) ~= ARGV[2] then return 0 end
redis.call("ZADD", KEYS[1], "XX", ARGV[3], ARGV[1])
return 1
`)

// completeScript records the outcome of a claimed message.
//
// KEYS[1] inflight zset, KEYS[2] msg hash, KEYS[3] events list,
// KEYS[4] ready zset, KEYS[5] failed zset
// ARGV[1] id, ARGV[2] lease token, ARGV[3] status
// (sent|failed|deferred|queued), ARGV[4] now (ms), ARGV[5] due (ms, for
// deferred/queued), ARGV[6] retention (ms), ARGV[7] attempts increment,
// ARGV[8] event JSON ("" for none), ARGV[9..] field, value pairs to set
// Returns 1, or 0 when the lease was lost (the outcome is not recorded).
//
// A late outcome is still taken when the lease ran out (Redis was down
// longer than the visibility timeout, say) but no worker has taken the
// message since: it waits in ready with no lease. The late worker did make
// the attempt, so its outcome is the truth, and taking it avoids a second
// delivery.
var completeScript = script(`
local lease = redis.call("HGET", KEYS[2], $F_LEASE)
if lease ~= ARGV[2] then
  if lease == "" and redis.call("ZSCORE", KEYS[4], ARGV[1]) then
    redis.call("ZREM", KEYS[4], ARGV[1])
  else
    return 0
  end
end
redis.call("ZREM", KEYS[1], ARGV[1])
local fields = {$F_LEASE, "", $F_STATUS, ARGV[3], $F_UPDATED_AT, ARGV[4]}
for i = 9, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call("HSET", KEYS[2], unpack(fields))
if ARGV[7] ~= "0" then redis.call("HINCRBY", KEYS[2], $F_ATTEMPTS, ARGV[7]) end
if ARGV[8] ~= "" then
  redis.call("RPUSH", KEYS[3], ARGV[8])
  redis.call("LTRIM", KEYS[3], -200, -1)
end
local st = ARGV[3]
if st == $S_SENT then
  redis.call("HDEL", KEYS[2], $F_BODY)
  redis.call("PEXPIRE", KEYS[2], ARGV[6])
  redis.call("PEXPIRE", KEYS[3], ARGV[6])
elseif st == $S_FAILED then
  redis.call("ZADD", KEYS[5], ARGV[4], ARGV[1])
  redis.call("PEXPIRE", KEYS[2], ARGV[6])
  redis.call("PEXPIRE", KEYS[3], ARGV[6])
else
  redis.call("ZADD", KEYS[4], ARGV[5], ARGV[1])
end
return 1
`)
