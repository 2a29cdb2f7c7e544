-- acquire_set: take several reservations at once, all or none, and issue
-- a fencing token for each; with the queues, in the order the waiters
-- arrived. Every key is in one hash slot (the caller checks it on Cluster).
--
-- KEYS[1] restart-guard marker
-- then, for each of the n resources, 4 keys from KEYS[2 + 4(i-1)]:
--   its reservation key, fencing companion, queue of waiters, their leases
-- ARGV[1] holder value (one for every key; a waiter keeps it for its wait)
-- ARGV[2] TTL in milliseconds (also the lease of a place in a queue)
-- ARGV[3] restart guard in milliseconds (0: no guard)
-- ARGV[4] lifetime of the fencing companion keys in milliseconds
-- ARGV[5] the queues: '' ignores them, 'try' refuses while anyone queues
--         for any of the keys, 'wait' takes a place in every queue at once
--         (or keeps them and renews their leases), and acquires only at the
--         head of every queue
-- ARGV[6] how to publish: 'SPUBLISH' on Cluster, 'PUBLISH' elsewhere
-- ARGV[6 + i] the turn channel of resource i
--
-- Returns {1, token 1, ..., token n} when acquired, else
-- {0, pttl, guarded, holder, place, i}: as the acquire script says of
-- resource i, the first that refused.
--
-- Places are taken in every queue in one script, so every queue orders
-- two set waiters alike: the one that came first is ahead everywhere, and
-- two sets that overlap cannot wait for each other.
local t = redis.pcall('TIME')
if t.err then
  return redis.error_reply('NOPERM the acquire script needs TIME (for fencing tokens), which the server refused: ' .. t.err)
end
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local now_ms = math.floor(now_us / 1000)
local value, ttl, mode = ARGV[1], tonumber(ARGV[2]), ARGV[5]
local n = (#KEYS - 1) / 4

local function key(i) return KEYS[2 + 4 * (i - 1)] end
local function fence(i) return KEYS[3 + 4 * (i - 1)] end
local function queue(i) return KEYS[4 + 4 * (i - 1)] end
local function leases(i) return KEYS[5 + 4 * (i - 1)] end

-- enqueue takes a place at the end of every queue where the caller has
-- none, renews its leases, and answers its furthest place (0: head of all).
local function enqueue()
  local furthest = 0
  for i = 1, n do
    local rank = redis.call('ZRANK', queue(i), value)
    if not rank then
      local tail = redis.call('ZRANGE', queue(i), '-1', '-1', 'WITHSCORES')
      local score = now_us
      if tail[2] then
        score = math.max(now_us, tonumber(tail[2]) + 1)
      end
      redis.call('ZADD', queue(i), score, value)
      rank = redis.call('ZCARD', queue(i)) - 1
    end
    furthest = math.max(furthest, rank)
    redis.call('ZADD', leases(i), now_ms + ttl, value)
    for _, k in ipairs({queue(i), leases(i)}) do
      if redis.call('PTTL', k) < ttl then
        redis.call('PEXPIRE', k, ttl)
      end
    end
  end
  return furthest
end

local guard = tonumber(ARGV[3])
if guard > 0 then
  local set_ms = tonumber(redis.call('GET', KEYS[1]))
  local left = 0
  if not set_ms then
    redis.call('SET', KEYS[1], string.format('%.0f', now_ms))
    left = guard
  elseif set_ms + guard > now_ms then
    left = set_ms + guard - now_ms
  end
  if left > 0 then
    if mode == 'wait' then
      return {0, left, 1, '', enqueue(), 1}
    end
    return {0, left, 1}
  end
end

-- The last tokens, read before anything is written.
local last = {}
for i = 1, n do
  local v = redis.call('GET', fence(i))
  if v then
    last[i] = tonumber(v)
    if not last[i] then
      return redis.error_reply('WRONGTYPE the fencing key ' .. fence(i) .. ' holds a value that is not a token')
    end
  else
    last[i] = 0
  end
end

-- The queues, pruned of waiters whose lease ran out and of places without
-- a lease; heads before and after.
local before, head = {}, {}
if mode ~= '' then
  for i = 1, n do
    if redis.call('EXISTS', queue(i)) == 1 then
      before[i] = redis.call('ZRANGE', queue(i), '0', '0')[1]
      local dead = redis.call('ZRANGE', leases(i), '-inf', now_ms, 'BYSCORE', 'LIMIT', '0', '64')
      if #dead > 0 then
        redis.call('ZREM', queue(i), unpack(dead))
        redis.call('ZREM', leases(i), unpack(dead))
      end
      for _ = 1, 64 do
        head[i] = redis.call('ZRANGE', queue(i), '0', '0')[1]
        if not head[i] or redis.call('ZRANK', leases(i), head[i]) then
          break
        end
        redis.call('ZREM', queue(i), head[i])
        head[i] = nil
      end
    end
  end
end

-- tell tells each queue's head, when it changed, that its turn came.
local function tell(except)
  for i = 1, n do
    if before[i] or head[i] then
      local now = redis.call('ZRANGE', queue(i), '0', '0')[1]
      if now and now ~= except and now ~= before[i] then
        redis.pcall(ARGV[6], ARGV[6 + i], now)
      end
    end
  end
end

-- refused answers why resource i refused, as the acquire script does.
local function refused(i, place)
  local v = redis.pcall('GET', key(i))
  if type(v) ~= 'string' then
    v = ''
  end
  return {0, redis.call('PTTL', key(i)), 0, v, place, i}
end

for i = 1, n do
  if mode == 'try' and head[i] then
    tell(nil)
    return refused(i, redis.call('ZCARD', queue(i)))
  end
  if mode == 'wait' and head[i] and head[i] ~= value then
    local place = enqueue()
    tell(nil)
    return refused(i, place)
  end
end

-- Every key free, or ours (a retry of an attempt whose reply was lost)?
for i = 1, n do
  local v = redis.pcall('GET', key(i))
  if v and v ~= value then
    if mode == 'wait' then
      enqueue()
      tell(value)
    end
    return refused(i, 0)
  end
end

local out = {1}
for i = 1, n do
  redis.call('SET', key(i), value, 'PX', ttl)
  local token = math.max(last[i] + 1, now_us)
  redis.call('SET', fence(i), string.format('%.0f', token), 'PX', ARGV[4])
  out[i + 1] = token
  if mode ~= '' and (before[i] or head[i]) then
    redis.call('ZREM', queue(i), value)
    redis.call('ZREM', leases(i), value)
  end
end
tell(value)
return out
