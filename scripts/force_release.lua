-- force_release: delete a reservation whoever holds it, and tell waiters.
--
-- KEYS[1] reservation key
-- ARGV[1] release channel
-- ARGV[2] how to publish: 'SPUBLISH' on Cluster, else absent (PUBLISH)
--
-- Returns the holder value that was deleted, or false when nobody held it.
local v = redis.pcall('GET', KEYS[1])
if type(v) ~= 'string' then
  return false
end
redis.call('DEL', KEYS[1])
redis.pcall(ARGV[2] or 'PUBLISH', ARGV[1], KEYS[1]) -- best effort, as in release
return v
