-- renew: extend every reservation that is still ours.
--
-- KEYS[1..n]    reservation keys
-- KEYS[n+1..2n] their fencing companion keys, so that the last token stays
--               readable (reserve status) for as long as the holding lasts;
--               for a semaphore's permit, the semaphore's marker, which
--               must outlive every permit (never shortened: GT)
-- ARGV[1..n]    the holder values
-- ARGV[n+1]     TTL in milliseconds
-- ARGV[n+2]     lifetime of the companion keys in milliseconds
--
-- Returns a list with 1 for each key extended and 0 for each key that is
-- gone or someone else's (a value of another type included).
local n = #KEYS / 2
local ttl = ARGV[n + 1]
local fence_ttl = ARGV[n + 2]
local out = {}
for i = 1, n do
  if redis.pcall('GET', KEYS[i]) == ARGV[i] then
    redis.call('PEXPIRE', KEYS[i], ttl)
    redis.pcall('PEXPIRE', KEYS[n + i], fence_ttl, 'GT')
    out[i] = 1
  else
    out[i] = 0
  end
end
return out
