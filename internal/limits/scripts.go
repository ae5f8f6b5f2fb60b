package limits

import "github.com/redis/go-redis/v9"

// acquireScript takes a connection slot when one is free. A lease is expired
// when its expiry is at or before now.
//
// KEYS[1] conns zset
// ARGV[1] now (ms), ARGV[2] lease expiry (ms), ARGV[3] lease id,
// ARGV[4] max leases (0 = no limit), ARGV[5] longest wait to answer (ms)
// Returns 0 when the lease was added, else the milliseconds to wait before
// trying again (at least 1).
var acquireScript = redis.NewScript(`
local now = tonumber(ARGV[1])
redis.call("ZREMRANGEBYSCORE", KEYS[1], "-inf", now)
local max = tonumber(ARGV[4])
if max > 0 and redis.call("ZCARD", KEYS[1]) >= max then
  local first = redis.call("ZRANGE", KEYS[1], 0, 0, "WITHSCORES")
  local wait = tonumber(first[2]) - now
  if wait > tonumber(ARGV[5]) then wait = tonumber(ARGV[5]) end
  if wait < 1 then wait = 1 end
  return wait
end
redis.call("ZADD", KEYS[1], ARGV[2], ARGV[3])
local last = redis.call("ZRANGE", KEYS[1], -1, -1, "WITHSCORES")
redis.call("PEXPIRE", KEYS[1], math.max(tonumber(last[2]) - now, 1))
return 0
`)

// renewScript pushes a lease's expiry further. A lease still in the set
// holds its slot even if its expiry passed: every acquire removes expired
// leases before counting, so one that is still there was never replaced.
//
// KEYS[1] conns zset
// ARGV[1] now (ms), ARGV[2] new expiry (ms), ARGV[3] lease id
// Returns 1, or 0 when the lease is gone (expired and removed, or released).
var renewScript = redis.NewScript(`
if not redis.call("ZSCORE", KEYS[1], ARGV[3]) then return 0 end
redis.call("ZADD", KEYS[1], ARGV[2], ARGV[3])
local last = redis.call("ZRANGE", KEYS[1], -1, -1, "WITHSCORES")
redis.call("PEXPIRE", KEYS[1], math.max(tonumber(last[2]) - tonumber(ARGV[1]), 1))
return 1
`)

// recipientsLua checks, and optionally records, a message's recipients
// against the rolling window. Log members are "<recipients>:<id>", scored by
// the admission time; an entry leaves the window when its time is at or
// before now - window. Both keys expire one window after the last entry was
// added. The running sum is recomputed from the log when it is missing or
// when the log holds fewer recipients than it says (a key evicted or deleted
// by hand), so the two cannot drift apart for long.
//
// KEYS[1] log zset, KEYS[2] running sum (string)
// ARGV[1] now (ms), ARGV[2] window (ms), ARGV[3] recipients of the message,
// ARGV[4] limit (0 = no limit); the function's record_id is the entry id
// ("" = check only, record nothing)
// Returns 0 when the recipients fit (recorded unless record_id is ""), the
// milliseconds until enough old entries leave the window when they do not,
// or -1 when the message alone is over the limit.
//
// It is a Lua function of the entry id (record_id: "" = check only), run
// by admitScript.
const recipientsLua = `local function recipients(record_id)` + "\n" + `
local function count(member) return tonumber(string.match(member, "^(%d+):")) end
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local limit = tonumber(ARGV[4])
local cutoff = now - window
if limit > 0 and n > limit then return -1 end

local function recompute()
  local s = 0
  for _, m in ipairs(redis.call("ZRANGE", KEYS[1], 0, -1)) do s = s + count(m) end
  local ttl = redis.call("PTTL", KEYS[1])
  if s > 0 and ttl > 0 then
    redis.call("SET", KEYS[2], s, "PX", ttl)
  else
    redis.call("DEL", KEYS[2])
  end
  return s
end

-- waitFor walks the log from the oldest entry until enough recipients have
-- left; nil when the whole log is not enough (the sum was wrong).
local function waitFor(sum)
  local need = sum + n - limit
  local start = 0
  while true do
    local batch = redis.call("ZRANGE", KEYS[1], start, start + 99, "WITHSCORES")
    if #batch == 0 then return nil end
    for i = 1, #batch, 2 do
      need = need - count(batch[i])
      if need <= 0 then return math.max(tonumber(batch[i + 1]) + window - now, 1) end
    end
    start = start + 100
  end
end

local sum = redis.call("GET", KEYS[2])
if sum then
  sum = tonumber(sum)
  local old = redis.call("ZRANGEBYSCORE", KEYS[1], "-inf", cutoff)
  if #old > 0 then
    for _, m in ipairs(old) do sum = sum - count(m) end
    redis.call("ZREMRANGEBYSCORE", KEYS[1], "-inf", cutoff)
    redis.call("SET", KEYS[2], sum, "KEEPTTL")
  end
else
  redis.call("ZREMRANGEBYSCORE", KEYS[1], "-inf", cutoff)
  sum = recompute()
end

if limit > 0 and sum + n > limit then
  local wait = waitFor(sum)
  if not wait then
    sum = recompute()
    if sum + n > limit then wait = waitFor(sum) end
  end
  if wait then return wait end
end

if record_id ~= "" then
  redis.call("ZADD", KEYS[1], now, ARGV[3] .. ":" .. record_id)
  redis.call("SET", KEYS[2], sum + n, "PX", window)
  redis.call("PEXPIRE", KEYS[1], window)
end
return 0
end
`

// admitScript takes a message's whole admission in one round trip: the
// daily recipients checked without recording, the per-minute GCRA, and the
// recipients recorded, in that order (see "Order inside AdmitMessage").
// Being one script, nothing can come between the steps.
//
// The GCRA is redis_rate's (v10, allowN, burst 1, cost 1: the same key,
// stored value and clock, Redis's TIME), so a mailbox's state carries over
// between versions and instances of mailgate that use either.
//
// KEYS[1] log zset, KEYS[2] running sum (string), KEYS[3] GCRA key (with
// redis_rate's "rate:" prefix)
// ARGV[1..5] as recipientsScript (ARGV[4] 0 = no daily limit), ARGV[6]
// messages per period (0 = no per-minute limit), ARGV[7] period (s)
// Returns 0 when admitted (and counted against both limits), the
// milliseconds to wait when not, or -1 when the message alone is over the
// daily limit.
var admitScript = redis.NewScript(`
redis.replicate_commands()
` + recipientsLua + `
local rate = tonumber(ARGV[6])
if tonumber(ARGV[4]) > 0 and rate > 0 then
  local wait = recipients("")
  if wait ~= 0 then return wait end
end
if rate > 0 then
  local emission_interval = tonumber(ARGV[7]) / rate
  local jan_1_2017 = 1483228800
  local t = redis.call("TIME")
  local now = (t[1] - jan_1_2017) + (t[2] / 1000000)
  local tat = redis.call("GET", KEYS[3])
  if not tat then tat = now else tat = tonumber(tat) end
  tat = math.max(tat, now)
  local new_tat = tat + emission_interval
  local allow_at = new_tat - emission_interval
  local diff = now - allow_at
  if diff < 0 then
    return math.max(math.ceil(-diff * 1000), 1)
  end
  local reset_after = new_tat - now
  if reset_after > 0 then
    redis.call("SET", KEYS[3], new_tat, "EX", math.ceil(reset_after))
  end
end
return recipients(ARGV[5])
`)

// usageScript reads a mailbox's current usage without changing anything.
//
// KEYS[1] conns zset, KEYS[2] log zset, KEYS[3] running sum (string)
// ARGV[1] now (ms), ARGV[2] now - 1 minute (ms), ARGV[3] now - recipient
// window (ms)
// Returns {live leases, log entries in the last minute, recipients in the
// window}.
var usageScript = redis.NewScript(`
local function count(member) return tonumber(string.match(member, "^(%d+):")) end
local conns = redis.call("ZCOUNT", KEYS[1], "(" .. ARGV[1], "+inf")
local msgs = redis.call("ZCOUNT", KEYS[2], "(" .. ARGV[2], "+inf")
local sum = redis.call("GET", KEYS[3])
if sum then
  sum = tonumber(sum)
  for _, m in ipairs(redis.call("ZRANGEBYSCORE", KEYS[2], "-inf", ARGV[3])) do sum = sum - count(m) end
else
  sum = 0
  for _, m in ipairs(redis.call("ZRANGEBYSCORE", KEYS[2], "(" .. ARGV[3], "+inf")) do sum = sum + count(m) end
end
return {conns, msgs, sum}
`)
