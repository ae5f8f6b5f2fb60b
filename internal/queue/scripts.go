package queue

// laneFns are the Lua helpers of the scripts that put a message back in
// reach of Claim. Every script that adds an id to ready must also put it in
// its lane through enlane, or Claim never finds it (Migrate repairs such an
// id at the next start). They expect the locals lp (the lane key prefix),
// lanes (the lanes zset) and lanewait (the lane-wait hash).
const laneFns = laneTimeLua + `
local function lane_of(msg)
  local l = redis.call("HGET", msg, $F_LANE)
  if l and l ~= "" then return l end
  local from = redis.call("HGET", msg, $F_FROM)
  if not from or from == "" then return "-" end
  return string.lower(from)
end
local function enlane(lane, id, score)
  redis.call("ZADD", lp .. lane, score, id)
  lane_due(lanes, lanewait, lane, score)
end
`

// laneTimeLua keeps a lane's time in the lanes zset when a message due at
// score joins it: never after that message's due time, never before the
// wait recorded for the lane (ZADD LT, which also adds a lane not there).
// A lane already due no later than score keeps its time, so the wait is
// only read when the time may change: under load, a sender's lane holds a
// backlog, and a message joining it costs one ZSCORE.
const laneTimeLua = `
local function lane_due(lanes, lanewait, lane, score)
  local s = tonumber(score)
  local cur = redis.call("ZSCORE", lanes, lane)
  if cur and tonumber(cur) <= s then return end
  local w = tonumber(redis.call("HGET", lanewait, lane) or "0")
  if w > s then s = w end
  redis.call("ZADD", lanes, "LT", s, lane)
end
`

// countLua and uncountLua add a message to and remove it from its route's
// waiting counters (doc.go, "Limits"). The message's waiting_bytes field
// says whether it counts, so each decrement happens once however often a
// script meets the message; a counter that would drop to zero or below is
// removed, so the hash holds only the apps with something waiting and a
// stray decrement cannot make room that does not exist. An increment reads
// the three counters with one HMGET and writes them with one HSET (the
// script is atomic, so that is an increment): the enqueue script reads
// them for its limits anyway.
const countLua = `
local function counters(waiting, app)
  local v = redis.call("HMGET", waiting, $W_BYTES, $W_APPPFX .. app .. $W_APP_MESSAGES, $W_APPPFX .. app .. $W_APP_BYTES)
  return tonumber(v[1] or "0"), tonumber(v[2] or "0"), tonumber(v[3] or "0")
end
local function add_counts(waiting, app, size, bytes, messages, appbytes)
  redis.call("HSET", waiting, $W_BYTES, bytes + size,
    $W_APPPFX .. app .. $W_APP_MESSAGES, messages + 1, $W_APPPFX .. app .. $W_APP_BYTES, appbytes + size)
end
local function count(msg, waiting, app, size)
  redis.call("HSET", msg, $F_WAITING_BYTES, size)
  local bytes, messages, appbytes = counters(waiting, app)
  add_counts(waiting, app, size, bytes, messages, appbytes)
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
// ARGV[12] lane, ARGV[13..] field, value pairs of the hash (all but the
// lane and waiting_bytes, which the script writes from ARGV[12] and ARGV[7]),
// KEYS[7] the message's lane zset, KEYS[8] lanes zset, KEYS[9] lane-wait hash
// Returns {1, id} when stored now; {2, id} when this very id was stored
// already (a retried call whose first reply was lost: a no-op); {0, first
// id} when the idempotency key belongs to another message; {-1, ""} when
// the route is full and {-2, ""} when the app's share is, nothing stored.
//
// Replays are answered before the limits are looked at: a message already
// stored is never refused. A limit is only reached by a queue that holds
// something, so a message bigger than a bytes limit still goes through an
// empty queue rather than never.
//
// Redis is single-threaded, so every command here is paid by every
// submission of every instance: nothing is read whose value the caller
// knows (the lane), the hash is written by one HSET, the counters are read
// by one HMGET (not at all in an empty route, whose counters are cleared)
// and written by one HSET, and the lane's time is only touched when it
// changes. Each write is also appended to the AOF.
var enqueueScript = script(countLua + laneTimeLua + `
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
local bytes, messages, appbytes = 0, 0, 0
if n == 0 then
  redis.call("DEL", KEYS[6])
else
  bytes, messages, appbytes = counters(KEYS[6], app)
end
if over(ARGV[8], n, 1) or over(ARGV[9], bytes, size) then return {-1, ""} end
if over(ARGV[10], messages, 1) or over(ARGV[11], appbytes, size) then return {-2, ""} end
local lane = ARGV[12]
redis.call("HSET", KEYS[1], $F_LANE, lane, $F_WAITING_BYTES, ARGV[7], unpack(ARGV, 13))
add_counts(KEYS[6], app, size, bytes, messages, appbytes)
redis.call("RPUSH", KEYS[2], ARGV[5])
redis.call("ZADD", KEYS[3], ARGV[2], ARGV[1])
redis.call("ZADD", KEYS[7], ARGV[2], ARGV[1])
lane_due(KEYS[8], KEYS[9], lane, ARGV[2])
if ARGV[3] == "1" then
  redis.call("SET", KEYS[4], ARGV[1], "PX", ARGV[4])
end
return {1, ARGV[1]}
`)

// claimScript hands expired leases back, then takes up to ARGV[4] due
// messages of one lane: the lane whose turn came first.
//
// KEYS[1] lanes zset, KEYS[2] ready zset, KEYS[3] inflight zset, KEYS[4] lane-wait hash
// ARGV[1] now (ms), ARGV[2] lease deadline (ms), ARGV[3] lease token,
// ARGV[4] most messages to take, ARGV[5] pace (ms, 0 for none): the lane
// taken from waits that long before its next message is taken,
// ARGV[6] msg key prefix, ARGV[7] events key prefix, ARGV[8] lane key prefix,
// ARGV[9] "lease expired" event (JSON)
// Returns {next, id, due, hash, id, due, hash, ...}: next is 0 when a
// message was taken, else when the first lane may send (ms), -1 when
// nothing waits; hash is the message's hash as a flat field/value list.
//
// The lane and message keys are derived here from the prefixes package
// keys gives (the script cannot know which lane comes first); they carry
// the route's hash tag like KEYS, so the script stays on one slot.
//
// A lane's score is when it may send next: its first message's due time,
// never before a wait set by Complete (ARGV park) or the pace, and after a
// take at least now, so lanes with a backlog take turns with the others.
// An id of a lane that is no longer in ready (deleted, or cancelled by a
// script that only knows ready) is dropped on the way.
var claimScript = script(`
local now = tonumber(ARGV[1])
local lanes, ready, inflight, lanewait = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local mp, ep, lp = ARGV[6], ARGV[7], ARGV[8]
` + laneFns + `
local expired = redis.call("ZRANGEBYSCORE", inflight, "-inf", now, "LIMIT", 0, 100)
for _, id in ipairs(expired) do
  redis.call("ZREM", inflight, id)
  local msg = mp .. id
  if redis.call("EXISTS", msg) == 1 then
    redis.call("HSET", msg, $F_LEASE, "", $F_STATUS, $S_DEFERRED, $F_UPDATED_AT, now)
    redis.call("HINCRBY", msg, $F_ATTEMPTS, 1)
    redis.call("RPUSH", ep .. id, ARGV[9])
    redis.call("ZADD", ready, now, id)
    enlane(lane_of(msg), id, now)
  end
end

local want = tonumber(ARGV[4])
local pace = tonumber(ARGV[5])
local out = {0}
for round = 1, 32 do
  local top = redis.call("ZRANGEBYSCORE", lanes, "-inf", now, "LIMIT", 0, 1)
  if #top == 0 then break end
  local lane = top[1]
  local lk = lp .. lane
  local ids = redis.call("ZRANGEBYSCORE", lk, "-inf", now, "WITHSCORES", "LIMIT", 0, want)
  local got = 0
  for i = 1, #ids, 2 do
    local id = ids[i]
    redis.call("ZREM", lk, id)
    local msg = mp .. id
    if redis.call("ZREM", ready, id) == 1 and redis.call("EXISTS", msg) == 1 then
      redis.call("ZADD", inflight, ARGV[2], id)
      redis.call("HSET", msg, $F_LEASE, ARGV[3], $F_STATUS, $S_SENDING, $F_UPDATED_AT, now)
      out[#out + 1] = id
      out[#out + 1] = ids[i + 1]
      out[#out + 1] = redis.call("HGETALL", msg)
      got = got + 1
    end
  end
  local first = redis.call("ZRANGE", lk, 0, 0, "WITHSCORES")
  local w = tonumber(redis.call("HGET", lanewait, lane) or "0")
  if got > 0 and pace > 0 then
    w = now + pace
    redis.call("HSET", lanewait, lane, w)
  elseif w > 0 and w <= now then
    redis.call("HDEL", lanewait, lane)
  end
  if #first == 0 then
    redis.call("ZREM", lanes, lane)
  else
    local s = math.max(tonumber(first[2]), w)
    if got > 0 then s = math.max(s, now) end
    redis.call("ZADD", lanes, s, lane)
  end
  if got > 0 then return out end
end
local nxt = redis.call("ZRANGE", lanes, 0, 0, "WITHSCORES")
if #nxt == 0 then out[1] = -1 else out[1] = tonumber(nxt[2]) end
return out
`)

// migrateScript puts ids of ready that are in no lane into their lanes:
// messages queued before lanes existed, or by a script that only knows
// ready.
//
// KEYS[1] lanes zset, KEYS[2] ready zset, KEYS[3] lane-wait hash
// ARGV[1] msg key prefix, ARGV[2] lane key prefix, ARGV[3..] ids
// Returns how many ids it put into a lane.
var migrateScript = script(`
local lanes, ready, lanewait = KEYS[1], KEYS[2], KEYS[3]
local mp, lp = ARGV[1], ARGV[2]
` + laneFns + `
local n = 0
for i = 3, #ARGV do
  local id = ARGV[i]
  local due = redis.call("ZSCORE", ready, id)
  local msg = mp .. id
  if due and redis.call("EXISTS", msg) == 1 then
    local lane = lane_of(msg)
    if not redis.call("ZSCORE", lp .. lane, id) then
      enlane(lane, id, due)
      n = n + 1
    end
  end
end
return n
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
// KEYS[4] ready zset, KEYS[5] failed zset, KEYS[6] waiting counters hash,
// KEYS[7] the message's lane zset, KEYS[8] lanes zset, KEYS[9] lane-wait hash
// ARGV[1] id, ARGV[2] lease token, ARGV[3] status
// (sent|failed|deferred|queued), ARGV[4] now (ms), ARGV[5] due (ms, for
// deferred/queued), ARGV[6] retention (ms), ARGV[7] attempts increment,
// ARGV[8] event JSON ("" for none), ARGV[9] lane, ARGV[10] "1" when the
// whole lane waits until the due time (none of its messages is claimed
// before), ARGV[11] the message's score in ready and its lane when it waits
// with its lane (it keeps its place), ARGV[12..] field, value pairs to set
// Returns 1, or 0 when the lease was lost (the outcome is not recorded).
//
// A late outcome is still taken when the lease ran out (Redis was down
// longer than the visibility timeout, say) but no worker has taken the
// message since: it waits in ready with no lease. The late worker did make
// the attempt, so its outcome is the truth, and taking it avoids a second
// delivery. A sent or failed message no longer waits: it leaves the
// waiting counters.
var completeScript = script(uncountLua + laneTimeLua + `
local lanes, lanewait = KEYS[8], KEYS[9]
local lease = redis.call("HGET", KEYS[2], $F_LEASE)
if lease ~= ARGV[2] then
  if lease == "" and redis.call("ZSCORE", KEYS[4], ARGV[1]) then
    redis.call("ZREM", KEYS[4], ARGV[1])
    redis.call("ZREM", KEYS[7], ARGV[1])
  else
    return 0
  end
end
redis.call("ZREM", KEYS[1], ARGV[1])
local fields = {$F_LEASE, "", $F_STATUS, ARGV[3], $F_UPDATED_AT, ARGV[4]}
for i = 12, #ARGV do fields[#fields + 1] = ARGV[i] end
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
elseif ARGV[10] == "1" then
  redis.call("ZADD", KEYS[4], ARGV[11], ARGV[1])
  redis.call("ZADD", KEYS[7], ARGV[11], ARGV[1])
  -- The wait replaces the lane's: it is the latest word on the mailbox
  -- (a pace set at the claim is shortened when the limit says sooner).
  redis.call("HSET", lanewait, ARGV[9], ARGV[5])
  redis.call("ZADD", lanes, ARGV[5], ARGV[9])
else
  redis.call("ZADD", KEYS[4], ARGV[5], ARGV[1])
  redis.call("ZADD", KEYS[7], ARGV[5], ARGV[1])
  lane_due(lanes, lanewait, ARGV[9], ARGV[5])
end
return 1
`)

// expireScript fails a waiting message whose delivery.max_age has passed:
// it waited on a held route or a waiting mailbox for longer than a message
// may wait. It keeps its body, so an operator can requeue it.
//
// KEYS[1] msg hash, KEYS[2] events list, KEYS[3] ready zset, KEYS[4] failed zset,
// KEYS[5] the message's lane zset, KEYS[6] waiting counters hash
// ARGV[1] id, ARGV[2] now (ms), ARGV[3] latest start (ms): the message
// expires when it was created, requeued or scheduled for (the latest of
// them) at or before it,
// ARGV[4] retention (ms), ARGV[5] event (JSON)
// Returns 1 when it failed the message, else 0 (taken meanwhile, gone, or
// not that old).
var expireScript = script(uncountLua + `
if not redis.call("ZSCORE", KEYS[3], ARGV[1]) then return 0 end
local h = redis.call("HMGET", KEYS[1], $F_CREATED_AT, $F_REQUEUED_AT, $F_SEND_AT)
if not h[1] then
  redis.call("ZREM", KEYS[3], ARGV[1])
  redis.call("ZREM", KEYS[5], ARGV[1])
  return 0
end
local start = tonumber(h[1])
for i = 2, 3 do
  local t = h[i] and tonumber(h[i])
  if t and t > start then start = t end
end
if start > tonumber(ARGV[3]) then return 0 end
redis.call("ZREM", KEYS[3], ARGV[1])
redis.call("ZREM", KEYS[5], ARGV[1])
redis.call("HSET", KEYS[1], $F_STATUS, $S_FAILED, $F_LEASE, "", $F_UPDATED_AT, ARGV[2])
redis.call("HDEL", KEYS[1], $F_DUE_AT)
redis.call("RPUSH", KEYS[2], ARGV[5])
redis.call("LTRIM", KEYS[2], -200, -1)
redis.call("ZADD", KEYS[4], ARGV[2], ARGV[1])
uncount(KEYS[1], KEYS[6])
redis.call("PEXPIRE", KEYS[1], ARGV[4])
redis.call("PEXPIRE", KEYS[2], ARGV[4])
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
