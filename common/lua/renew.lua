-- Extend the leases a worker still holds. ARGV[3] = worker, ARGV[4] = lease ms ("" = default),
-- then fingerprints. Returns how many were renewed (a lease reaped meanwhile is not revived).
local worker = ARGV[3]
local lease_ms = tonumber(ARGV[4]) or SPEC.lease_ms
local renewed = 0
for i = 5, #ARGV do
  local lease = redis.call('HGET', K_LEASES, ARGV[i])
  if lease then
    local _, w = split_lease(lease)
    if w == worker then
      redis.call('ZADD', K_INFLIGHT, 'XX', NOW + lease_ms, ARGV[i])
      renewed = renewed + 1
    end
  end
end
return renewed
