-- Claim up to n docs for a summarizer worker. ARGV[3] = n, ARGV[4] = worker, ARGV[5] = lease ms.
-- Docs wait in one FIFO list (entries "fp \t attempts \t doc JSON", pushed by the crawler's
-- settle). Returns {count, entry1, entry2, ...}; leases live in docs-inflight/docs-leases.
local n, worker, lease_ms = tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5])
local out = {0}
for _ = 1, n do
  local entry = redis.call('LPOP', K_DOCS)
  if not entry then break end
  local fp = split_entry(entry)
  redis.call('ZADD', K_DOCS_INFLIGHT, NOW + lease_ms, fp)
  redis.call('HSET', K_DOCS_LEASES, fp, worker .. '\t' .. entry)
  out[#out + 1] = entry
end
out[1] = #out - 1
return out
