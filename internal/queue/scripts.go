package queue

import "github.com/redis/go-redis/v9"

// enqueueScript stores a new message and queues it.
//
// KEYS[1] msg hash, KEYS[2] events list, KEYS[3] ready zset, KEYS[4] idempotency key
// ARGV[1] id, ARGV[2] now (ms), ARGV[3] use idempotency ("1"/"0"),
// ARGV[4] idempotency TTL (ms), ARGV[5] first event (JSON),
// ARGV[6..] field, value pairs of the hash
// Returns {1, id} when stored now; {2, id} when this very id was stored
// already (a retried call whose first reply was lost: a no-op); {0, first
// id} when the idempotency key belongs to another message.
var enqueueScript = redis.NewScript(`
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

// claimScript first returns expired leases to ready, then takes the first
// due message.
//
// KEYS[1] ready zset, KEYS[2] inflight zset
// ARGV[1] now (ms), ARGV[2] lease deadline (ms), ARGV[3] lease token,
// ARGV[4] msg key prefix ("P:{R}:msg:"), ARGV[5] events key prefix,
// ARGV[6] "lease expired" event (JSON)
// Returns nil when nothing is due, else the id followed by the message's
// hash as a flat field/value list.
var claimScript = redis.NewScript(`
local expired = redis.call("ZRANGEBYSCORE", KEYS[2], "-inf", ARGV[1], "LIMIT", 0, 100)
for _, id in ipairs(expired) do
  redis.call("ZREM", KEYS[2], id)
  local k = ARGV[4] .. id
  if redis.call("EXISTS", k) == 1 then
    redis.call("HSET", k, "lease", "", "status", "deferred", "updated_at", ARGV[1])
    redis.call("HINCRBY", k, "attempts", 1)
    redis.call("RPUSH", ARGV[5] .. id, ARGV[6])
    redis.call("ZADD", KEYS[1], ARGV[1], id)
  end
end
while true do
  local ids = redis.call("ZRANGEBYSCORE", KEYS[1], "-inf", ARGV[1], "LIMIT", 0, 1)
  if #ids == 0 then return nil end
  local id = ids[1]
  redis.call("ZREM", KEYS[1], id)
  local k = ARGV[4] .. id
  if redis.call("EXISTS", k) == 1 then
    redis.call("ZADD", KEYS[2], ARGV[2], id)
    redis.call("HSET", k, "lease", ARGV[3], "status", "sending", "updated_at", ARGV[1])
    local out = {id}
    local h = redis.call("HGETALL", k)
    for i = 1, #h do out[#out + 1] = h[i] end
    return out
  end
  -- an id whose hash is gone (deleted by an operator) is dropped
end
`)

// extendScript pushes a lease deadline further while its worker still works.
//
// KEYS[1] inflight zset, KEYS[2] msg hash
// ARGV[1] id, ARGV[2] lease token, ARGV[3] new deadline (ms)
// Returns 1, or 0 when the lease was lost.
var extendScript = redis.NewScript(`
if redis.call("HGET", KEYS[2], "lease") ~= ARGV[2] then return 0 end
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
var completeScript = redis.NewScript(`
local lease = redis.call("HGET", KEYS[2], "lease")
if lease ~= ARGV[2] then
  if lease == "" and redis.call("ZSCORE", KEYS[4], ARGV[1]) then
    redis.call("ZREM", KEYS[4], ARGV[1])
  else
    return 0
  end
end
redis.call("ZREM", KEYS[1], ARGV[1])
local fields = {"lease", "", "status", ARGV[3], "updated_at", ARGV[4]}
for i = 9, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call("HSET", KEYS[2], unpack(fields))
if ARGV[7] ~= "0" then redis.call("HINCRBY", KEYS[2], "attempts", ARGV[7]) end
if ARGV[8] ~= "" then
  redis.call("RPUSH", KEYS[3], ARGV[8])
  redis.call("LTRIM", KEYS[3], -200, -1)
end
local st = ARGV[3]
if st == "sent" then
  redis.call("HDEL", KEYS[2], "body")
  redis.call("PEXPIRE", KEYS[2], ARGV[6])
  redis.call("PEXPIRE", KEYS[3], ARGV[6])
elseif st == "failed" then
  redis.call("ZADD", KEYS[5], ARGV[4], ARGV[1])
  redis.call("PEXPIRE", KEYS[2], ARGV[6])
  redis.call("PEXPIRE", KEYS[3], ARGV[6])
else
  redis.call("ZADD", KEYS[4], ARGV[5], ARGV[1])
end
return 1
`)
