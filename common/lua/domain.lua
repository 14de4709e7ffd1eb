-- Change one domain's politeness. ARGV[3] = domain, ARGV[4] = op, ARGV[5] = value.
--   policy   value "rate,burst,per_domain_inflight" (empty parts keep the current value)
--   delay    robots.txt Crawl-delay in seconds: rate becomes at most 1/delay, burst 1
--   backoff  push the domain's next fetch at least value ms into the future
local d, op, value = ARGV[3], ARGV[4], ARGV[5]
local key = domain_key(d)
if op == 'policy' then
  local rate, burst, per_domain_inflight = string.match(value, '^([^,]*),([^,]*),([^,]*)$')
  if rate ~= '' then redis.call('HSET', key, 'rate', rate) end
  if burst ~= '' then redis.call('HSET', key, 'burst', burst) end
  if per_domain_inflight ~= '' then
    redis.call('HSET', key, 'per_domain_inflight', per_domain_inflight)
  end
elseif op == 'delay' then
  local delay = tonumber(value)
  if delay > 0 then
    local st = load_domain(d)
    refill(st)
    local rate = math.min(st.rate, 1 / delay)
    -- The bucket starts empty: robots.txt is read right before a page of this domain is
    -- fetched, and that fetch already spent this interval's token.
    redis.call('HSET', key, 'rate', tostring(rate), 'burst', '1', 'tokens', '0',
      'ts', tostring(st.ts))
  end
elseif op == 'backoff' then
  local until_ms = NOW + tonumber(value)
  local cur = tonumber(redis.call('HGET', key, 'until')) or 0
  if until_ms > cur then redis.call('HSET', key, 'until', tostring(until_ms)) end
else
  return redis.error_reply('unknown domain op ' .. op)
end
schedule(d, load_domain(d))
return 1
