-- release: delete a reservation only if it is still ours, and tell waiters.
--
-- KEYS[1] reservation key
-- ARGV[1] holder value
-- ARGV[2] release channel
-- ARGV[3] how to publish: 'SPUBLISH' on Cluster (a sharded channel, in the
--         key's slot, heard on the key's node only), else absent: PUBLISH
--
-- Returns 1 when released, 0 when the key was gone or someone else's, 2 when
-- released but the notice was refused: the notice is best effort, as a user
-- without the right to PUBLISH to the channel (a Redis 7 ACL user gets no
-- channel by default) must still be able to release.
if redis.pcall('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  local published = redis.pcall(ARGV[3] or 'PUBLISH', ARGV[2], KEYS[1])
  if type(published) == 'table' and published.err then
    return 2
  end
  return 1
end
return 0
