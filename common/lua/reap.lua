-- Return expired leases (their worker died or hung) to their queues with attempts + 1, or to
-- the dead-letter list after max_attempts. ARGV[3] = the most to reap in this call; ARGV[4],
-- if given, replaces NOW as the cut-off ('+inf': every lease, for a store whose holders are all
-- known dead). Returns {requeued, dead}.
local limit = tonumber(ARGV[3])
local due = (ARGV[4] ~= nil and ARGV[4] ~= '') and ARGV[4] or NOW
local expired = redis.call('ZRANGEBYSCORE', K_INFLIGHT, '-inf', due, 'LIMIT', 0, limit)
local requeued, dead = 0, 0
for _, fp in ipairs(expired) do
  local lease = redis.call('HGET', K_LEASES, fp)
  redis.call('ZREM', K_INFLIGHT, fp)
  if lease then
    redis.call('HDEL', K_LEASES, fp)
    local d, _, entry = split_lease(lease)
    local _, attempts, payload = split_entry(entry)
    attempts = attempts + 1
    local st = release_slot(d)
    count('reaped')
    if attempts >= SPEC.max_attempts then
      dead_letter(fp, d, attempts, payload, 'lease_expired', nil)
      dead = dead + 1
    else
      redis.call('RPUSH', queue_key(d), fp .. '\t' .. attempts .. '\t' .. payload)
      requeued = requeued + 1
    end
    schedule(d, st)
  end
end
return {requeued, dead}
