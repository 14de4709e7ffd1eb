-- The summary cache's single flight in one round trip. ARGV[3] = content key, ARGV[4] = lock
-- time-to-live in ms. Returns (summarizer.cache.CacheProbe) {1, summary} on a hit, {2} when this
-- caller took the key's lock (it computes, then stores and unlocks), {0} when another caller
-- holds it (wait, probe again).
local key = ARGV[3]
local hit = redis.call('HGET', K_SUMMARY_CACHE, key)
if hit then return {CACHE_PROBE.HIT, hit} end
if redis.call('SET', summary_lock_key(key), '1', 'NX', 'PX', tonumber(ARGV[4])) then
  return {CACHE_PROBE.LOCKED}
end
return {CACHE_PROBE.BUSY}
