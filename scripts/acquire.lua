-- acquire: take a reservation if it is free, and issue its fencing token.
--
-- KEYS[1] reservation key
-- KEYS[2] fencing companion key (same hash slot as KEYS[1])
-- KEYS[3] restart-guard marker (same hash slot as KEYS[1]): when it was set
-- ARGV[1] holder value
-- ARGV[2] TTL in milliseconds
-- ARGV[3] restart guard in milliseconds (0: no guard)
-- ARGV[4] lifetime of the fencing companion key in milliseconds
--
-- Returns {1, token} when acquired, {0, pttl, guarded, holder} otherwise:
-- pttl is the holder's remaining time (-1 when the key has no expiry), or
-- the restart guard's remaining time when guarded is 1; holder is the value
-- in the key ('' when it is not a string), so that the caller can say who
-- holds it without a second round trip that could race.
local t = redis.pcall('TIME')
if t.err then
  -- Name what is missing: Redis's own message does not say which command.
  return redis.error_reply('NOPERM the acquire script needs TIME (for fencing tokens), which the server refused: ' .. t.err)
end
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local now_ms = math.floor(now_us / 1000)

local guard = tonumber(ARGV[3])
if guard > 0 then
  -- The marker holds when it was set (ms). Each client waits its own
  -- guard from then, so a client with a short TTL cannot cut short the
  -- guard that a client with a longer one needs.
  local set_ms = tonumber(redis.call('GET', KEYS[3]))
  if not set_ms then
    -- The marker is gone: the server lost its data (or is new). Holders
    -- of reservations that vanished with it have not seen their loss yet,
    -- so nobody acquires until the guard has passed.
    redis.call('SET', KEYS[3], string.format('%.0f', now_ms))
    return {0, guard, 1}
  end
  if set_ms + guard > now_ms then
    return {0, set_ms + guard - now_ms, 1}
  end
end

-- Read the last token before writing anything: a key of another type, or a
-- string that is not a number, at the companion fails the script here, with nothing changed, rather than
-- after the SET, which would leave a reservation nobody knows it holds.
local last = redis.call('GET', KEYS[2])
if last then
  last = tonumber(last)
  if not last then
    -- Someone else's string: refuse, and leave it as it is.
    return redis.error_reply('WRONGTYPE the fencing key ' .. KEYS[2] .. ' holds a value that is not a token')
  end
else
  last = 0
end

if not redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2], 'NX') then
  -- A retry of this very attempt (the client resent a script whose reply
  -- it lost) finds its own value, unique to the attempt: the key is ours.
  local holder = redis.pcall('GET', KEYS[1])
  if holder == ARGV[1] then
    return {1, tonumber(redis.call('GET', KEYS[2])) or 0}
  end
  if type(holder) ~= 'string' then
    holder = ''
  end
  return {0, redis.call('PTTL', KEYS[1]), 0, holder}
end

-- The next token is max(last + 1, server time in microseconds), so tokens
-- grow even when the companion key was lost with the rest of the data.
local token = math.max(last + 1, now_us)
redis.call('SET', KEYS[2], string.format('%.0f', token), 'PX', ARGV[4])
return {1, token}
