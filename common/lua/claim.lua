-- Claim up to n URLs for one worker.
-- ARGV[3] = n, ARGV[4] = worker id, ARGV[5] = lease ms ("" = the crawl's default).
-- Returns {count, wait_ms, domain1, entry1, domain2, entry2, ...}. When count is 0, wait_ms is
-- how long until the earliest domain (or delayed retry) becomes ready, so callers sleep exactly
-- that long instead of polling; -1 when no time is known: nothing is queued, or everything
-- queued waits for an in-flight slot (it becomes ready when some lease settles).
local n = tonumber(ARGV[3])
local worker = ARGV[4]
local lease_ms = tonumber(ARGV[5]) or SPEC.lease_ms
local deadline = NOW + lease_ms

-- Retries whose back-off has passed go back to the tail of their domain's list.
local due = redis.call('ZRANGEBYSCORE', K_DELAYED, '-inf', NOW, 'LIMIT', 0, 256)
for _, member in ipairs(due) do
  local d, entry = string.match(member, '^([^\t]*)\t(.*)$')
  redis.call('ZREM', K_DELAYED, member)
  redis.call('RPUSH', queue_key(d), entry)
  schedule(d, load_domain(d))
end

local out = {}
local got = 0
for _ = 1, 4 do
  if got >= n then break end
  local cands = redis.call('ZRANGEBYSCORE', K_READY, '-inf', NOW, 'LIMIT', 0, math.max(n, 16))
  if #cands == 0 then break end
  for _, d in ipairs(cands) do
    if got >= n then break end
    local st = load_domain(d)
    refill(st)
    while got < n and st.tokens >= 1 and st.inflight < st.cap and NOW >= st['until'] do
      local entry = redis.call('LPOP', queue_key(d))
      if not entry then break end
      local fp = split_entry(entry)
      st.tokens = st.tokens - 1
      st.inflight = st.inflight + 1
      redis.call('ZADD', K_INFLIGHT, deadline, fp)
      redis.call('HSET', K_LEASES, fp, d .. '\t' .. worker .. '\t' .. entry)
      out[#out + 1] = d
      out[#out + 1] = entry
      got = got + 1
    end
    save_domain(d, st)
    schedule(d, st)
  end
end

local wait = -1
if got == 0 then
  local r = redis.call('ZRANGE', K_READY, 0, 0, 'WITHSCORES')
  local l = redis.call('ZRANGE', K_DELAYED, 0, 0, 'WITHSCORES')
  local t = nil
  if #r > 0 then t = tonumber(r[2]) end
  if #l > 0 and (t == nil or tonumber(l[2]) < t) then t = tonumber(l[2]) end
  if t ~= nil then wait = math.max(1, t - NOW) end
end
local res = {got, wait}
for _, v in ipairs(out) do res[#res + 1] = v end
return res
