-- release: delete a reservation only if it is still ours, tell waiters, and
-- take the caller off the queue of waiters.
--
-- KEYS[1] reservation key
-- KEYS[2] queue of waiters (same hash slot): holder values by arrival
-- KEYS[3] their leases (same hash slot): holder values by expiry (ms)
-- KEYS[4..] (optional) a semaphore's permits, when the one held with the
--         value is not known (a give-back after a lost reply): the one
--         held with the value is released instead of KEYS[1]
-- ARGV[1] holder value
-- ARGV[2] release channel
-- ARGV[3] how to publish: 'SPUBLISH' on Cluster (a sharded channel, in the
--         key's slot, heard on the key's node only), 'PUBLISH' elsewhere
-- ARGV[4] turn channel: the queue's new head is told there (the payload is
--         its holder value), so that a release wakes one waiter, not all
-- ARGV[5..] (optional, with no permits) a handoff: the TTL, the restart
--         guard and the fencing companion's lifetime in milliseconds (as
--         the acquire script's ARGV[2..4]), then the holder values of the
--         releasing client's own waiters in the queue (maybe none). When
--         the queue's new head is one of them, it takes the key here, as
--         the acquire script would have it take it at its next attempt,
--         and its token is issued: the client hands it the reservation
--         with no attempt of its own, and the next place is told its turn
--         instead. The head of another client takes it too when its lease
--         says that it takes grants (see hand): it is told on the turn
--         channel, with '<value>\t<token>\t<end of its lease, ms>' as the
--         payload.
-- KEYS[4], KEYS[5] with a handoff: the fencing companion key and the
--         restart-guard marker (as the acquire script's KEYS[2..3])
--
-- A waiter that gives up calls it too (its value is not in the key): it
-- leaves the queue, and when it was the head, the next waiter is told.
--
-- Returns 1 when released, 0 when the key was gone or someone else's, 2 when
-- released but the notice was refused: the notice is best effort, as a user
-- without the right to PUBLISH to the channel (a Redis 7 ACL user gets no
-- channel by default) must still be able to release. After a handoff,
-- {released, value, token}: the waiter that holds the key now, and its
-- token; {released, '', 0} when another client's waiter was not handed
-- the key because the lease's read (ZSCORE) was refused.
local released = 0
local key = KEYS[1]
local handoff = ARGV[5] ~= nil
local permits = 4
if handoff then
  permits = #KEYS + 1 -- KEYS[4..5] are no permits
end
for i = permits, #KEYS do
  if redis.pcall('GET', KEYS[i]) == ARGV[1] then
    key = KEYS[i]
    break
  end
end
-- Ours: deleted at the end, unless handed over (below).
if redis.pcall('GET', key) == ARGV[1] then
  released = 1
end
-- The queue's head and second place, read before the rest of the queue's
-- part: with no queue (nobody waits, the common case) that part is not
-- run, nor are its functions made. A refused read runs it, and it stops
-- there.
local places = redis.pcall('ZRANGE', KEYS[2], '0', '1')
-- given and token are the waiter that the key was handed over to and its
-- token; unheard is set when another client's waiter was not handed the
-- key because the read of its lease was refused (see hand).
local given, token, unheard
-- finish ends the release: the key is free, unless handed over, and those
-- that listen for its releases are told (waiters, and reserve top), handed
-- over or not: a waiter woken while the key was handed over finds it held.
local function finish()
  if released > 0 then
    if not given then
      redis.call('DEL', key)
    end
    local published = redis.pcall(ARGV[3], ARGV[2], key)
    if type(published) == 'table' and published.err then
      released = 2
    end
  end
  if given then
    return {released, given, token}
  end
  if unheard then
    return {released, '', 0}
  end
  return released
end
if not places.err and not places[1] then
  return finish()
end
-- The queue's part (below) is best effort as well: a user whose ACL was
-- written before the queue may not run its commands, and must still
-- release. call runs a command of that part, and stops the part when the
-- command is refused.
local function call(...)
  local r = redis.pcall(...)
  if type(r) == 'table' and r.err then
    error(r.err)
  end
  return r
end
-- hand gives the key, ours until now, to the new head at time t (TIME's
-- reply): a waiter of the releasing client, for a TTL; another client's
-- waiter whose lease says that it takes grants (half a millisecond past
-- a whole one, see acquire's lease), until its lease's end. That client
-- counts the holding's deadline from the attempt that wrote the lease, as
-- an acquisition by that attempt would: the key must not outlive the
-- lease. hand fails, and leaves everything as it was, when the head takes
-- no grants, when its lease has less than half the releasing client's TTL
-- left (the holding would be too short to be of use), or when the acquire
-- script would refuse it: the restart guard still runs, or the fencing
-- companion holds something that is not a token (a missing one counts as
-- 0, as in acquire).
local function hand(head, t)
  local mine = false
  for i = 8, #ARGV do
    if ARGV[i] == head then
      mine = true
      break
    end
  end
  local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
  local ends
  if not mine then
    local s = redis.pcall('ZSCORE', KEYS[3], head)
    unheard = type(s) == 'table' -- refused: an ACL written before grants
    local lease = tonumber(s)
    assert(lease and lease % 1 == 0.5)
    ends = math.floor(lease)
    assert(ends - math.floor(now_us / 1000) >= tonumber(ARGV[5]) / 2)
  end
  local guard = tonumber(ARGV[6])
  if guard > 0 then
    local set_ms = tonumber(redis.call('GET', KEYS[5]))
    assert(set_ms and set_ms + guard <= math.floor(now_us / 1000))
  end
  local last = 0
  local v = redis.call('GET', KEYS[4])
  if v then
    last = tonumber(v)
  end
  assert(last)
  -- The token first: were the key's write refused (out of memory), a
  -- token issued to nobody leaves a gap, never a token issued twice.
  token = math.max(last + 1, now_us)
  redis.call('SET', KEYS[4], string.format('%.0f', token), 'PX', ARGV[7])
  if ends then
    -- Told before the key's write, so that the grant reaches the head's
    -- client ahead of the tracking notice of that write, which would
    -- have it try. Nothing below can fail: the script wrote already (no
    -- refusal for memory), and the key holds a string.
    redis.pcall(ARGV[3], ARGV[4], head .. '\t' .. string.format('%.0f', token) .. '\t' .. string.format('%.0f', ends))
    redis.call('SET', KEYS[1], head, 'PXAT', string.format('%.0f', ends))
  else
    redis.call('SET', KEYS[1], head, 'PX', ARGV[5])
  end
  given = head
  redis.call('ZREM', KEYS[2], head)
  redis.call('ZREM', KEYS[3], head)
end
pcall(function()
  -- The head and the second place, read above: someone queues.
  if places.err then
    error(places.err)
  end
  local head, second = places[1], places[2]
  -- A holder left the queue when it acquired: only a waiter that gives up
  -- is still in it, with its lease.
  local changed = call('ZREM', KEYS[2], ARGV[1]) == 1
  if changed then
    call('ZREM', KEYS[3], ARGV[1])
  end
  -- Waiters whose lease ran out (they died, or lost their link) leave too.
  local t = redis.call('TIME')
  local dead = call('ZRANGE', KEYS[3], '-inf', t[1] * 1000 + math.floor(t[2] / 1000), 'BYSCORE', 'LIMIT', '0', '64')
  if #dead > 0 then
    call('ZREM', KEYS[2], unpack(dead))
    call('ZREM', KEYS[3], unpack(dead))
    changed = true
  end
  local now = head
  if changed then
    local left = call('ZRANGE', KEYS[2], '0', '1')
    now, second = left[1], left[2]
  end
  if now and released > 0 and handoff and pcall(hand, now, t) then
    -- The head holds the key, and left the queue: the next place is told
    -- its turn.
    now = second
  end
  if now and (released > 0 or now ~= head) then
    redis.pcall(ARGV[3], ARGV[4], now)
  end
end)
return finish()
