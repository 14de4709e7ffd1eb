-- Extend a summarizer's doc leases. ARGV[3] = worker, ARGV[4] = lease ms, then fingerprints.
local worker, lease_ms = ARGV[3], tonumber(ARGV[4])
local renewed = 0
for i = 5, #ARGV do
  local lease = redis.call('HGET', K_DOCS_LEASES, ARGV[i])
  if lease and string.sub(lease, 1, #worker + 1) == worker .. '\t' then
    redis.call('ZADD', K_DOCS_INFLIGHT, 'XX', NOW + lease_ms, ARGV[i])
    renewed = renewed + 1
  end
end
return renewed
