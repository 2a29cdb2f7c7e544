-- raise_fence: make the last fencing token of a resource at least a given
-- token (quorum mode writes a holding's token back to a majority of its
-- servers, so that every later majority meets it).
--
-- KEYS[1] fencing companion key
-- ARGV[1] token
-- ARGV[2] lifetime of the fencing key in milliseconds
--
-- Returns 1 when the key now holds ARGV[1], 0 when it held more already.
local last = redis.call('GET', KEYS[1])
if last then
  last = tonumber(last)
  if not last then
    return redis.error_reply('WRONGTYPE the fencing key ' .. KEYS[1] .. ' holds a value that is not a token')
  end
  if last >= tonumber(ARGV[1]) then
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
