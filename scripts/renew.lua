-- renew: extend every reservation that is still ours.
--
-- KEYS[i] reservation key, ARGV[i] its holder value, ARGV[#KEYS + 1] TTL in
-- milliseconds. Answers a list with 1 for each key extended and 0 for each
-- key that is gone or someone else's (a value of another type included).
local ttl = ARGV[#KEYS + 1]
local out = {}
for i, key in ipairs(KEYS) do
  if redis.pcall('GET', key) == ARGV[i] then
    redis.call('PEXPIRE', key, ttl)
    out[i] = 1
  else
    out[i] = 0
  end
end
return out
