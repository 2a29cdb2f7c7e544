-- acquire: take a reservation if it is free, and issue its fencing token;
-- with a queue, in the order the waiters arrived.
--
-- KEYS[1] reservation key
-- KEYS[2] fencing companion key (same hash slot as KEYS[1])
-- KEYS[3] restart-guard marker (same hash slot as KEYS[1]): when it was set
-- KEYS[4] queue of waiters (same hash slot): holder values by arrival
-- KEYS[5] their leases (same hash slot): holder values by expiry (ms)
-- ARGV[1] holder value (a waiter keeps one for its whole wait)
-- ARGV[2] TTL in milliseconds (also the lease of a place in the queue)
-- ARGV[3] restart guard in milliseconds (0: no guard)
-- ARGV[4] lifetime of the fencing companion key in milliseconds
-- ARGV[5] the queue: '' ignores it (and the key alone decides), 'try'
--         refuses while anyone queues (TryLock does not jump the queue),
--         'wait' takes a place, or keeps it and renews its lease, and
--         acquires only at the head (Lock); 'grant' is 'wait' for a waiter
--         that takes the key when a release hands it over (see lease)
-- ARGV[6] turn channel: a new head of the queue is told there (the payload
--         is its holder value)
-- ARGV[7] how to publish: 'SPUBLISH' on Cluster, 'PUBLISH' elsewhere
-- ARGV[8] limit: absent or 0 for a reservation; n for one of the n permits
--         of a semaphore. KEYS[1] is then the semaphore's marker, which
--         holds 'semaphore:<n>' for as long as a permit may be held (so that
--         a plain reservation of the name, a Node worker's included, is
--         refused meanwhile), and KEYS[6..5+n] are its permits' keys, each
--         a reservation key of its own (same hash slot).
-- KEYS[6] with ARGV[5] 'repair' (a quorum's holder taking again its part on
--         this server, as '' otherwise): the force-release record, which
--         refuses it while it holds ARGV[1]
--
-- Returns {1, token} when acquired ({1, token, i} for permit i),
-- {0, pttl, guarded, holder, place, leased}
-- otherwise: pttl is the holder's remaining time (-1 when the key has no
-- expiry, -2 when it is free but others queue), or the restart guard's
-- remaining time when guarded is 1; holder is the value in the key ('' when
-- it is free or not a string), so that the caller can say who holds it
-- without a second round trip that could race; place is, with 'wait', the
-- caller's place in the queue (0: the head), with 'try' how many queue;
-- leased is, in 'grant' mode, the end of the lease this attempt wrote (ms;
-- absent when it wrote none).
local t = redis.pcall('TIME')
if t.err then
  -- Name what is missing: Redis's own message does not say which command.
  return redis.error_reply('NOPERM the acquire script needs TIME (for fencing tokens), which the server refused: ' .. t.err)
end
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local now_ms = math.floor(now_us / 1000)

local mode = ARGV[5] or ''
local grants = mode == 'grant'
if grants then
  mode = 'wait'
end
if mode == 'repair' then
  if redis.call('GET', KEYS[6]) == ARGV[1] then
    -- A force release of the quorum deleted this part: it is not ours.
    local v = redis.pcall('GET', KEYS[1])
    return {0, redis.call('PTTL', KEYS[1]), 0, type(v) == 'string' and v or '', 0}
  end
  mode = ''
end
local limit = 0
if ARGV[8] then
  limit = tonumber(ARGV[8]) or 0
end

-- last_token reads the last token issued, 0 when there is none; nil when
-- the companion holds a string that is not a number (someone else's),
-- and a key of another type fails the script there. It is read before the
-- key is written (SET, PEXPIRE), so that such a companion fails the script
-- rather than leave a reservation that nobody knows it holds.
local function last_token()
  local last = redis.call('GET', KEYS[2])
  if not last then
    return 0
  end
  return tonumber(last)
end

-- not_token refuses a companion that holds someone else's string, and
-- leaves it as it is.
local function not_token()
  return redis.error_reply('WRONGTYPE the fencing key ' .. KEYS[2] .. ' holds a value that is not a token')
end

-- issue writes the next token, after last and no smaller than the server's
-- clock in microseconds (so that tokens grow across a loss of the data),
-- and answers it.
local function issue(last)
  local token, text = now_us
  if last >= now_us then
    token = last + 1
    text = string.format('%.0f', token)
  else
    -- The clock's own digits: TIME's seconds, then its microseconds in 6.
    text = t[1] .. string.sub('00000' .. t[2], -6)
  end
  redis.call('SET', KEYS[2], text, 'PX', ARGV[4])
  return token
end

-- The restart-guard marker holds when it was set (ms); nil when it is gone
-- (or holds no number). Each client waits its own guard from then, so a
-- client with a short TTL cannot cut short the guard that a client with a
-- longer one needs.
local guard = tonumber(ARGV[3])
local set_ms
if guard > 0 then
  set_ms = tonumber(redis.call('GET', KEYS[3]))
end
-- past is set when the guard lets the attempt through.
local past = guard <= 0 or (set_ms ~= nil and set_ms + guard <= now_ms)

-- The common case, a plain reservation past the restart guard that nobody
-- queues for and nobody holds, is taken here as the code below would take
-- it, without making that code's functions (which would cost Redis more
-- than the rest of the script). What it reads is kept for the code below
-- when it does not take: places (the queue's head and second place) and
-- current (the key; nil while not read).
local places, current
if limit == 0 and past then
  if mode ~= '' then
    places = redis.call('ZRANGE', KEYS[4], '0', '1')
  end
  if not (places and places[1]) then
    current = redis.pcall('GET', KEYS[1])
    if not current then
      local last = last_token()
      if not last then
        return not_token()
      end
      redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
      return {1, issue(last)}
    end
  end
end

-- marker is what the key holds while a permit of a semaphore of this limit
-- is held (see ARGV[8]).
local marker = 'semaphore:' .. limit

-- fresh is set when the queue's head was read and there was none: a place
-- taken then is the first, in a queue just made (see enqueue).
local fresh = false

-- lease keeps the caller's place for a TTL, and the queue for as long as
-- the longest lease in it. A waiter that takes grants ('grant') says so
-- with half a millisecond more: a release may then hand it the key, to
-- hold until its lease's end (see release), which it is told (leased),
-- so that it knows which of its attempts such a handover follows.
local leased
local function lease()
  local ttl = tonumber(ARGV[2])
  local ends = now_ms + ttl
  if grants then
    leased = ends
    ends = string.format('%.1f', ends + 0.5)
  end
  redis.call('ZADD', KEYS[5], ends, ARGV[1])
  -- Never shorter (GT): waiters with a longer TTL may queue. A key with no
  -- expiry yet (just made by ZADD) gets one (NX). A queue just made has
  -- none: NX first then, GT first otherwise, as either failing leaves the
  -- other to decide.
  local first, second = 'GT', 'NX'
  if fresh then
    first, second = 'NX', 'GT'
  end
  for i = 4, 5 do
    if redis.call('PEXPIRE', KEYS[i], ttl, first) == 0 then
      redis.call('PEXPIRE', KEYS[i], ttl, second)
    end
  end
end

-- stale is set when the queue changed after its head was read (head,
-- below): tell reads the head again.
local stale = false

-- enqueue takes a place at the end of the queue unless the caller has one,
-- renews its lease, and answers its place (0: the head).
local function enqueue()
  if fresh then
    -- Nobody queued: the first place, and nothing to read.
    redis.call('ZADD', KEYS[4], now_us, ARGV[1])
    stale = true
    lease()
    return 0
  end
  local rank = redis.call('ZRANK', KEYS[4], ARGV[1])
  if not rank then
    local tail = redis.call('ZRANGE', KEYS[4], '-1', '-1', 'WITHSCORES')
    local score = now_us
    if tail[2] then
      -- Behind the tail: the head is unchanged.
      score = math.max(now_us, tonumber(tail[2]) + 1)
    else
      stale = true -- the first place: the caller is the head now
    end
    redis.call('ZADD', KEYS[4], score, ARGV[1])
    rank = redis.call('ZCARD', KEYS[4]) - 1
  end
  lease()
  return rank
end

-- guarded refuses while the restart guard has left ms to run; a waiter
-- keeps its place in the order of arrival meanwhile.
local function guarded(left)
  if mode == 'wait' then
    local place = enqueue()
    return {0, left, 1, '', place, leased}
  end
  return {0, left, 1}
end

if not past then
  if not set_ms then
    -- The marker is gone: the server lost its data (or is new). Holders
    -- of reservations that vanished with it have not seen their loss yet,
    -- so nobody acquires until the guard has passed.
    redis.call('SET', KEYS[3], string.format('%.0f', now_ms))
    return guarded(guard)
  end
  return guarded(set_ms + guard - now_ms)
end

-- The queue's head before and after the pruning, and the second place.
local head_before, head, second
if mode ~= '' then
  places = places or redis.call('ZRANGE', KEYS[4], '0', '1')
  head_before, second = places[1], places[2]
end
local queued = head_before ~= nil -- a queue key exists: it is never empty
fresh = mode ~= '' and not queued
head = head_before
local pruned = false -- the pruning below changed the queue
if queued then
  -- Waiters whose lease ran out (they died, or lost their link) leave.
  local dead = redis.call('ZRANGE', KEYS[5], '-inf', now_ms, 'BYSCORE', 'LIMIT', '0', '64')
  if #dead > 0 then
    redis.call('ZREM', KEYS[4], unpack(dead))
    redis.call('ZREM', KEYS[5], unpack(dead))
    head = redis.call('ZRANGE', KEYS[4], '0', '0')[1]
    pruned = true
  end
  -- A place without a lease (its lease was evicted or deleted) would
  -- never run out: it leaves too, when it comes to the head. The caller's
  -- own place stays: it is alive, as it runs this, and takes the key or
  -- renews its lease below.
  for i = 1, 64 do
    if not head or head == ARGV[1] or redis.call('ZRANK', KEYS[5], head) then
      break
    end
    pruned = true
    redis.call('ZREM', KEYS[4], head)
    head = nil
    if i < 64 then
      head = redis.call('ZRANGE', KEYS[4], '0', '0')[1]
    end
  end
end

-- tell tells the queue's head, when it changed, that its turn came.
local function tell(except)
  if not queued then
    return
  end
  local now = head
  if stale then
    now = redis.call('ZRANGE', KEYS[4], '0', '0')[1]
  end
  if now and now ~= except and now ~= head_before then
    redis.pcall(ARGV[7], ARGV[6], now)
  end
end

-- leave takes the caller, which now holds the key, off the queue, and
-- tells the next waiter.
local function leave()
  if queued then
    redis.call('ZREM', KEYS[4], ARGV[1])
    redis.call('ZREM', KEYS[5], ARGV[1])
    if head_before == ARGV[1] and not pruned then
      -- The caller was the head, and nothing else changed the queue: the
      -- second place is the head now, with no need to read it.
      head = second
    else
      stale = true
    end
    tell(ARGV[1])
  end
end

-- The key's value, unless read above: read once, as no path below writes
-- the key before it answers it.
if current == nil then
  current = redis.pcall('GET', KEYS[1])
end

-- A semaphore's permits, read once: the one the caller holds (a retry),
-- the first free one.
local mine, free
if limit > 0 then
  for i = 1, limit do
    local v = redis.pcall('GET', KEYS[5 + i])
    if v == ARGV[1] then
      mine = i
      break
    end
    if not v and not free then
      free = i
    end
  end
end

-- holder returns the key's value ('' when not a string) and PTTL; for a
-- semaphore whose permits are all held, the value and PTTL of the permit
-- that expires first.
local function holder()
  local v = current
  if limit > 0 and (not v or v == marker) then
    local soonest, who = nil, ''
    for i = 1, limit do
      local pttl = redis.call('PTTL', KEYS[5 + i])
      if pttl >= -1 and (not soonest or soonest == -1 or (pttl >= 0 and pttl < soonest)) then
        soonest = pttl
        local w = redis.pcall('GET', KEYS[5 + i])
        who = type(w) == 'string' and w or ''
      end
    end
    return who, soonest or -2
  end
  if type(v) ~= 'string' then
    v = ''
  end
  return v, redis.call('PTTL', KEYS[1])
end

-- mark keeps the semaphore's marker for at least a TTL: never shorter, as
-- holders with a longer TTL may hold permits.
local function mark()
  if current then
    redis.call('PEXPIRE', KEYS[1], ARGV[2], 'GT')
  else
    redis.call('SET', KEYS[1], marker, 'PX', ARGV[2])
  end
end

-- A retry of an earlier attempt with this value (the client resent a
-- script whose reply it lost; a waiter keeps one value for its whole wait)
-- finds the key ours. It is ours from now for a TTL, so that the caller's
-- deadline, counted from this attempt, comes before the key's expiry.
if (limit == 0 and current == ARGV[1]) or (mine and (not current or current == marker)) then
  local last = last_token()
  if not last then
    return not_token()
  end
  if mine then
    redis.call('PEXPIRE', KEYS[5 + mine], ARGV[2])
    mark()
  else
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
  end
  leave()
  if last == 0 then
    -- The token's record is gone (a flush, an eviction): a new one.
    last = now_us
    redis.call('SET', KEYS[2], string.format('%.0f', last), 'PX', ARGV[4])
  end
  return {1, last, mine}
end

if queued then
  if mode == 'try' and head then
    tell(nil)
    local v, pttl = holder()
    return {0, pttl, 0, v, redis.call('ZCARD', KEYS[4])}
  end
  if mode == 'wait' and head and head ~= ARGV[1] then
    -- Not the head: take a place at the end, or keep ours.
    local rank = enqueue()
    tell(nil)
    local v, pttl = holder()
    return {0, pttl, 0, v, rank, leased}
  end
end

-- take takes the key, or a free permit of the semaphore, and reads the last
-- token before; it answers which (0 for the key), or nil when held: by
-- someone else, by every permit's holder, or, for a semaphore, as a plain
-- reservation or a semaphore of another limit (the marker says which). Its
-- second answer is an error reply, for a companion that is not a token.
local last
local function take()
  if limit == 0 then
    if current then
      return nil -- someone else's (ours was a retry, above), or not a string
    end
  elseif (current and current ~= marker) or not free then
    return nil
  end
  last = last_token()
  if not last then
    return nil, not_token()
  end
  if limit == 0 then
    redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
    return 0
  end
  redis.call('SET', KEYS[5 + free], ARGV[1], 'PX', ARGV[2])
  mark()
  return free
end

local taken, failed = take()
if failed then
  return failed
end
if not taken then
  local v, pttl = holder()
  if mode == 'wait' then
    -- Held, and nobody ahead of us: the head of the queue.
    enqueue()
    tell(ARGV[1])
  end
  return {0, pttl, 0, v, 0, leased}
end
leave()

local token = issue(last)
if limit > 0 then
  return {1, token, taken}
end
return {1, token}
