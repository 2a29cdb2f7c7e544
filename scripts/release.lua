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
--
-- A waiter that gives up calls it too (its value is not in the key): it
-- leaves the queue, and when it was the head, the next waiter is told.
--
-- Returns 1 when released, 0 when the key was gone or someone else's, 2 when
-- released but the notice was refused: the notice is best effort, as a user
-- without the right to PUBLISH to the channel (a Redis 7 ACL user gets no
-- channel by default) must still be able to release.
local released = 0
local key = KEYS[1]
for i = 4, #KEYS do
  if redis.pcall('GET', KEYS[i]) == ARGV[1] then
    key = KEYS[i]
    break
  end
end
if redis.pcall('GET', key) == ARGV[1] then
  redis.call('DEL', key)
  released = 1
  local published = redis.pcall(ARGV[3], ARGV[2], key)
  if type(published) == 'table' and published.err then
    released = 2
  end
end
-- The queue's part is best effort as well: a user whose ACL was written
-- before the queue may not run its commands, and must still release.
local function call(...)
  local r = redis.pcall(...)
  if type(r) == 'table' and r.err then
    error(r.err)
  end
  return r
end
pcall(function()
  -- The head, or nil when nobody queues (no queue key).
  local head = call('ZRANGE', KEYS[2], 0, 0)[1]
  if not head then
    return
  end
  -- A holder left the queue when it acquired: only a waiter that gives up
  -- is still in it, with its lease.
  local changed = call('ZREM', KEYS[2], ARGV[1]) == 1
  if changed then
    call('ZREM', KEYS[3], ARGV[1])
  end
  -- Waiters whose lease ran out (they died, or lost their link) leave too.
  local t = redis.call('TIME')
  local dead = call('ZRANGE', KEYS[3], '-inf', t[1] * 1000 + math.floor(t[2] / 1000), 'BYSCORE', 'LIMIT', 0, 64)
  if #dead > 0 then
    call('ZREM', KEYS[2], unpack(dead))
    call('ZREM', KEYS[3], unpack(dead))
    changed = true
  end
  local now = head
  if changed then
    now = call('ZRANGE', KEYS[2], 0, 0)[1]
  end
  if now and (released > 0 or now ~= head) then
    redis.pcall(ARGV[3], ARGV[4], now)
  end
end)
return released
