-- release: delete a reservation only if it is still ours, and tell waiters.
--
-- KEYS[1] reservation key
-- ARGV[1] holder value
-- ARGV[2] release channel
--
-- Returns 1 when released, 0 when the key was gone or someone else's.
if redis.pcall('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', ARGV[2], KEYS[1])
  return 1
end
return 0
