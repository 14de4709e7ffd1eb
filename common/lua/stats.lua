-- One atomic snapshot of the crawl's counters and structures, so that the outcome equation
-- (admitted = done + failed + skipped + pending) can be checked at any moment.
-- ARGV[3] = how many top domains (by queue length) to list.
-- Returns {counts-flat, queued, delayed, inflight, ready, ready_now, dead, domains, top-flat,
-- bloom-meta-flat, {revisit states, asleep, due now, pass}}.
local top_n = tonumber(ARGV[3])
local queued = 0
local top = {}
for _, d in ipairs(redis.call('SMEMBERS', K_DOMAINS)) do
  local len = redis.call('LLEN', queue_key(d))
  queued = queued + len
  if len > 0 then top[#top + 1] = {d, len} end
end
table.sort(top, function(a, b) return a[2] > b[2] end)
local top_flat = {}
for j = 1, math.min(top_n, #top) do
  top_flat[#top_flat + 1] = top[j][1]
  top_flat[#top_flat + 1] = top[j][2]
end
return {
  redis.call('HGETALL', K_COUNTS),
  queued,
  redis.call('ZCARD', K_DELAYED),
  redis.call('ZCARD', K_INFLIGHT),
  redis.call('ZCARD', K_READY),
  redis.call('ZCOUNT', K_READY, '-inf', NOW),
  redis.call('LLEN', K_DEAD),
  redis.call('SCARD', K_DOMAINS),
  top_flat,
  redis.call('HGETALL', K_SEEN_BLOOM),
  {redis.call('HLEN', K_REVISIT), redis.call('ZCARD', K_DUE),
    redis.call('ZCOUNT', K_DUE, '-inf', NOW), current_pass()},
}
