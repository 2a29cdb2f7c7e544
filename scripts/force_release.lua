-- force_release: delete a reservation whoever holds it, and tell waiters.
--
-- KEYS[1] reservation key
-- KEYS[2] (a quorum's server only) the force-release record, {K}:forced
-- ARGV[1] release channel
-- ARGV[2] how to publish: 'SPUBLISH' on Cluster, else absent or 'PUBLISH'
-- ARGV[3] (with KEYS[2]) the record's lifetime in milliseconds when the key
--         has no expiry
--
-- Returns the holder value that was deleted, or false when nobody held it.
local v = redis.pcall('GET', KEYS[1])
if type(v) ~= 'string' then
  return false
end
if KEYS[2] then
  -- The holder must not take this server's part again (acquire in
  -- 'repair' mode) for as long as the key had to live: by then it has
  -- heard that the other servers' parts are gone too.
  local pttl = redis.call('PTTL', KEYS[1])
  if pttl < 1 then
    pttl = tonumber(ARGV[3])
  end
  redis.call('SET', KEYS[2], v, 'PX', pttl)
end
redis.call('DEL', KEYS[1])
redis.pcall(ARGV[2] or 'PUBLISH', ARGV[1], KEYS[1]) -- best effort, as in release
return v
