-- The summary cache's single flight in one round trip (summarizer/cache.py). The cache belongs
-- to no crawl, so this script runs without the crawl prelude: KEYS[1] = the entry, KEYS[2] =
-- its lock (one hash tag: common.keys.summary_cache_key, summary_lock_key); ARGV[1] = the lock's
-- time-to-live in ms, ARGV[2] = the entry's in ms (0: no expiry).
-- Returns (common.protocol.CacheProbe) {HIT, summary} on a hit, whose time-to-live starts
-- again; {LOCKED} when this caller took the key's lock (it computes, then stores and unlocks);
-- {BUSY} when another caller holds it (wait, probe again).
local entry, lock = KEYS[1], KEYS[2]
local ttl = tonumber(ARGV[2])
local hit = redis.call('GET', entry)
if hit then
  if ttl > 0 then redis.call('PEXPIRE', entry, ttl) end
  return {CACHE_PROBE.HIT, hit}
end
if redis.call('SET', lock, '1', 'NX', 'PX', tonumber(ARGV[1])) then
  return {CACHE_PROBE.LOCKED}
end
return {CACHE_PROBE.BUSY}
