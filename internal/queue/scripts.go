package queue

// countLua and uncountLua add a message to and remove it from its route's
// waiting counters (doc.go, "Limits"). The message's waiting_bytes field
// says whether it counts, so each decrement happens once however often a
// script meets the message; a counter that would drop to zero or below is
// removed, so the hash holds only the apps with something waiting and a
// stray decrement cannot make room that does not exist.
const countLua = `
local function count(msg, waiting, app, size)
  redis.call("HSET", msg, $F_WAITING_BYTES, size)
  redis.call("HINCRBY", waiting, $W_BYTES, size)
  redis.call("HINCRBY", waiting, $W_APPPFX .. app .. $W_APP_MESSAGES, 1)
  redis.call("HINCRBY", waiting, $W_APPPFX .. app .. $W_APP_BYTES, size)
end
`

const uncountLua = `
local function uncount(msg, waiting)
  local size = redis.call("HGET", msg, $F_WAITING_BYTES)
  if not size then return end
  local app = redis.call("HGET", msg, $F_APP) or ""
  redis.call("HDEL", msg, $F_WAITING_BYTES)
  local function dec(field, n)
    if redis.call("HINCRBY", waiting, field, -n) <= 0 then redis.call("HDEL", waiting, field) end
  end
  dec($W_BYTES, tonumber(size))
  dec($W_APPPFX .. app .. $W_APP_MESSAGES, 1)
  dec($W_APPPFX .. app .. $W_APP_BYTES, tonumber(size))
end
`

// enqueueScript checks the route's and the app's waiting limits, then
// stores a new message, queues it and counts it.
//
// KEYS[1] msg hash, KEYS[2] events list, KEYS[3] ready zset, KEYS[4] idempotency key,
// KEYS[5] inflight zset, KEYS[6] waiting counters hash
// ARGV[1] id, ARGV[2] due (ms: now, or send_at for a scheduled message),
// ARGV[3] use idempotency ("1"/"0"), ARGV[4] idempotency TTL (ms),
// ARGV[5] first event (JSON), ARGV[6] app, ARGV[7] size (bytes),
// ARGV[8] route max messages, ARGV[9] route max bytes,
// ARGV[10] app max messages, ARGV[11] app max bytes (0: no limit),
// ARGV[12..] field, value pairs of the hash
// Returns {1, id} when stored now; {2, id} when this very id was stored
// already (a retried call whose first reply was lost: a no-op); {0, first
// id} when the idempotency key belongs to another message; {-1, ""} when
// the route is full and {-2, ""} when the app's share is, nothing stored.
//
// Replays are answered before the limits are looked at: a message already
// stored is never refused. A limit is only reached by a queue that holds
// something, so a message bigger than a bytes limit still goes through an
// empty queue rather than never.
var enqueueScript = script(countLua + `
if ARGV[3] == "1" then
  local existing = redis.call("GET", KEYS[4])
  if existing == ARGV[1] then return {2, existing} end
  if existing then return {0, existing} end
end
if redis.call("EXISTS", KEYS[1]) == 1 then return {2, ARGV[1]} end
local app, size = ARGV[6], tonumber(ARGV[7])
local function over(max, cur, add)
  max = tonumber(max)
  return max > 0 and cur > 0 and cur + add > max
end
local n = redis.call("ZCARD", KEYS[3]) + redis.call("ZCARD", KEYS[5])
if n == 0 then redis.call("DEL", KEYS[6]) end
local function counter(field) return tonumber(redis.call("HGET", KEYS[6], field) or "0") end
if over(ARGV[8], n, 1) or over(ARGV[9], counter($W_BYTES), size) then return {-1, ""} end
if over(ARGV[10], counter($W_APPPFX .. app .. $W_APP_MESSAGES), 1) or
   over(ARGV[11], counter($W_APPPFX .. app .. $W_APP_BYTES), size) then return {-2, ""} end
local fields = {}
for i = 12, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call("HSET", KEYS[1], unpack(fields))
count(KEYS[1], KEYS[6], app, size)
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
// KEYS[4] ready zset, KEYS[5] failed zset, KEYS[6] waiting counters hash
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
// delivery. A sent or failed message no longer waits: it leaves the
// waiting counters.
var completeScript = script(uncountLua + `
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
if st == $S_SENT or st == $S_FAILED then uncount(KEYS[2], KEYS[6]) end
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

// pruneFailedScript removes from the failed set the ids whose messages have
// expired: a failed message's hash lives for the retention from the moment
// it failed, which is its score, so the ids scored before now - retention
// name messages that are gone. At most ARGV[2] per run, so the work of one
// run stays bounded however many expired at once; the next run goes on.
//
// KEYS[1] failed zset
// ARGV[1] cutoff (ms), ARGV[2] how many at most
// Returns how many ids it removed.
var pruneFailedScript = script(`
local ids = redis.call("ZRANGEBYSCORE", KEYS[1], "-inf", ARGV[1], "LIMIT", 0, ARGV[2])
if #ids > 0 then redis.call("ZREM", KEYS[1], unpack(ids)) end
return #ids
`)
