-- Shared helpers, prepended to every frontier script by common/scripts.py.
--
-- Conventions for every script:
--   KEYS[1]  the crawl's spec hash (declared so Redis Cluster routes the call; every other key
--            shares its {crawl} hash tag, hence its slot)
--   ARGV[1]  the crawl's key prefix, "distcrawl:{crawl}:"
--   ARGV[2]  the time in ms, or "" to use the server clock (one clock for every worker)
--
-- Queue entries are "fp \t attempts \t payload": the payload is an opaque versioned JSON
-- document built by Python; Lua only ever touches the fingerprint and the attempt count.
-- Lease records are "domain \t worker \t entry".

-- The key names (P, K_SPEC ... and queue_key(d), domain_key(d), robots_key(d)) are
-- generated from common/keys.py by common/scripts.py and come before this file.

local function clock(arg)
  if arg ~= nil and arg ~= '' then return tonumber(arg) end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local NOW = clock(ARGV[2])

-- The spec's fields (the names and defaults of SPEC_DEFAULTS, generated from CrawlSpec by
-- common/scripts.py), falling back to the defaults where a crawl has no spec written.
local SPEC = (function()
  local names = {}
  for name, _ in pairs(SPEC_DEFAULTS) do names[#names + 1] = name end
  local v = redis.call('HMGET', K_SPEC, unpack(names))
  local raw = {}
  for i, name in ipairs(names) do raw[name] = v[i] or SPEC_DEFAULTS[name] end
  local spec = {}
  for _, name in ipairs(names) do spec[name] = tonumber(raw[name]) end
  spec.summarize = raw.summarize ~= '0'
  spec.seen = raw.seen
  return spec
end)()

local function split_entry(e)
  local fp, attempts, payload = string.match(e, '^([^\t]*)\t([^\t]*)\t(.*)$')
  return fp, tonumber(attempts), payload
end

local function split_lease(l)
  local d, w, e = string.match(l, '^([^\t]*)\t([^\t]*)\t(.*)$')
  return d, w, e
end

-- Whether the lease (holder w, queue entry) is the caller's: same worker and, when the caller
-- names its attempt (> 0), the same attempt, so a late answer for an attempt that was reaped
-- and claimed again is stale.
local function holds_lease(w, entry, worker, attempt)
  if w ~= worker then return false end
  if attempt <= 0 then return true end
  local _, prior = split_entry(entry)
  return prior + 1 == attempt
end

-- Domain state: bucket (tokens, ts), in-flight count, back-off deadline, and the overrides.
local function load_domain(d)
  local v = redis.call('HMGET', domain_key(d), 'tokens', 'ts', 'inflight', 'until',
    'rate', 'burst', 'per_domain_inflight')
  local st = {
    rate = tonumber(v[5]) or SPEC.rate, burst = tonumber(v[6]) or SPEC.burst,
    per_domain_inflight = tonumber(v[7]) or SPEC.per_domain_inflight,
    inflight = tonumber(v[3]) or 0,
    ['until'] = tonumber(v[4]) or 0,
  }
  st.tokens = tonumber(v[1]) or st.burst
  st.ts = tonumber(v[2]) or NOW
  return st
end

local function refill(st)
  if NOW > st.ts then
    st.tokens = math.min(st.burst, st.tokens + (NOW - st.ts) * st.rate / 1000)
    st.ts = NOW
  end
end

local function save_domain(d, st)
  redis.call('HSET', domain_key(d), 'tokens', tostring(st.tokens), 'ts', tostring(st.ts),
    'inflight', tostring(st.inflight))
end

-- When the domain's bucket next holds a whole token, never before its back-off deadline.
local function next_ready(st)
  local tokens = math.min(st.burst, st.tokens + math.max(0, NOW - st.ts) * st.rate / 1000)
  local t = NOW
  if tokens < 1 then t = NOW + math.ceil((1 - tokens) * 1000 / st.rate) end
  if st['until'] > t then t = st['until'] end
  return t
end

-- Invariant kept by every script: a domain is in "ready" iff its list is non-empty and it is
-- under its in-flight cap; its score is the time it may next be fetched.
local function schedule(d, st)
  if st.inflight < st.per_domain_inflight and redis.call('LLEN', queue_key(d)) > 0 then
    redis.call('ZADD', K_READY, next_ready(st), d)
  else
    redis.call('ZREM', K_READY, d)
  end
end

local function release_slot(d)
  local st = load_domain(d)
  st.inflight = math.max(0, st.inflight - 1)
  redis.call('HSET', domain_key(d), 'inflight', tostring(st.inflight))
  return st
end

local function count(field, n)
  redis.call('HINCRBY', K_COUNTS, field, n or 1)
end

-- The crawl's current pass (docs/revisits.md): 1 until a new pass is started.
local function current_pass()
  return tonumber(redis.call('HGET', K_SPEC, PASS_FIELD)) or 1
end

-- Revisit state (docs/revisits.md): K_REVISIT fp -> "domain \t interval_ms \t fetched_ms \t
-- held_pass \t payload", and K_DUE holds the fingerprints of the URLs asleep (not in the
-- frontier now), scored by when they are due: +inf for "at the next pass".
local function split_revisit(v)
  local d, interval, fetched, held, payload =
    string.match(v, '^([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$')
  return d, tonumber(interval), tonumber(fetched), tonumber(held), payload
end

local function join_revisit(d, interval, fetched, held, payload)
  return d .. '\t' .. interval .. '\t' .. fetched .. '\t' .. held .. '\t' .. payload
end

local function due_at(interval)
  if interval > 0 then return NOW + interval end
  return 'inf'
end

-- After a visit: keep the URL's state and put it to sleep for interval ms (REVISIT_FORGET:
-- it is gone, forget it).
local function revisit_set(fp, d, interval, payload)
  if interval == REVISIT_FORGET then
    redis.call('HDEL', K_REVISIT, fp)
    redis.call('ZREM', K_DUE, fp)
    return
  end
  redis.call('HSET', K_REVISIT, fp, join_revisit(d, interval, NOW, 0, payload))
  redis.call('ZADD', K_DUE, due_at(interval), fp)
end

-- A revisit that ended without a new visit (failed, skipped, dead-lettered): asleep again for
-- its interval, its state as it was. (A URL on its first visit has no state: nothing to do.)
local function revisit_resleep(fp)
  local v = redis.call('HGET', K_REVISIT, fp)
  if v then
    local _, interval = split_revisit(v)
    redis.call('ZADD', K_DUE, due_at(interval), fp)
  end
end

-- Wake fp (asleep in K_DUE): its revisit goes to the tail of its domain's queue with fresh
-- attempts and counts as an admission (so the outcome equation holds) and a revisit. Returns
-- its domain (nil when its state is missing).
local function promote(fp)
  redis.call('ZREM', K_DUE, fp)
  local v = redis.call('HGET', K_REVISIT, fp)
  if not v then return nil end
  local d, _, _, _, payload = split_revisit(v)
  redis.call('RPUSH', queue_key(d), fp .. '\t0\t' .. payload)
  count('admitted')
  count('revisits')
  return d
end

-- Move a leased entry to the dead-letter list as failed. The record, when the caller has none,
-- is a minimal one built from the payload so that export still shows the URL and the reason.
local function dead_letter(fp, d, attempts, payload, reason, record)
  redis.call('RPUSH', K_DEAD, fp .. '\t' .. d .. '\t' .. attempts .. '\t' .. reason .. '\t' .. payload)
  count('failed')
  if reason ~= '' then count('failed:' .. reason) end
  count('dead_letters')
  if record == nil or record == '' then
    local ok, doc = pcall(cjson.decode, payload)
    local url = ok and doc.u or nil
    local depth = ok and doc.d or nil
    record = cjson.encode({url = url, depth = depth, outcome = 'failed', reason = reason,
      attempts = attempts})
  end
  redis.call('HSET', K_PAGES, fp, record)
  revisit_resleep(fp)
end
