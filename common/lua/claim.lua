-- Claim up to n URLs for one worker.
-- ARGV[3] = n, ARGV[4] = worker id, ARGV[5] = lease ms ("" = the crawl's default).
-- Returns {count, wait_ms, pass, domain1, entry1, domain2, entry2, ...} (pass: the crawl's
-- current pass, which the claimed pages belong to). When count is 0, wait_ms is how long until
-- the earliest domain (or delayed retry, or revisit) becomes ready, so callers sleep exactly
-- that long instead of polling; CLAIM_WAIT.NONE when no time is known: nothing is queued, or
-- everything queued waits for an in-flight slot (it becomes ready when some lease settles);
-- CLAIM_WAIT.PAUSED when the crawl is paused because the summarizer's backlog is full.
--
-- Backpressure: every page in flight may become one doc, so a claim never takes more URLs than
-- max_docs_backlog - (docs waiting + docs in flight + pages in flight): the docs never exceed
-- the bound, and crawling resumes once the summarizers have freed a tenth of it.
local n = tonumber(ARGV[3])
local worker = ARGV[4]
local lease_ms = tonumber(ARGV[5]) or SPEC.lease_ms
local deadline = NOW + lease_ms

if SPEC.summarize and SPEC.max_docs_backlog > 0 then
  local room = SPEC.max_docs_backlog - redis.call('LLEN', K_DOCS)
    - redis.call('ZCARD', K_DOCS_INFLIGHT) - redis.call('ZCARD', K_INFLIGHT)
  -- (resume only once a tenth of the bound is free: claims then come in batches instead of
  -- one URL per summarized doc)
  if room < math.max(1, math.floor(SPEC.max_docs_backlog / 10)) then
    return {0, CLAIM_WAIT.PAUSED, current_pass()}
  end
  if room < n then n = room end
end

-- Retries whose back-off has passed go back to the tail of their domain's list.
local due = redis.call('ZRANGEBYSCORE', K_DELAYED, '-inf', NOW, 'LIMIT', 0, 256)
for _, member in ipairs(due) do
  local d, entry = string.match(member, '^([^\t]*)\t(.*)$')
  redis.call('ZREM', K_DELAYED, member)
  redis.call('RPUSH', queue_key(d), entry)
  schedule(d, load_domain(d))
end

-- Revisits whose time has come go to the tail of their domain's list.
for _, fp in ipairs(redis.call('ZRANGEBYSCORE', K_DUE, '-inf', NOW, 'LIMIT', 0, 256)) do
  local d = promote(fp)
  if d then schedule(d, load_domain(d)) end
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
    while got < n and st.tokens >= 1 and st.inflight < st.per_domain_inflight and NOW >= st['until'] do
      local entry = redis.call('LPOP', queue_key(d))
      if not entry then break end
      local fp = split_entry(entry)
      if SPEC.seen == 'bloom' and redis.call('HEXISTS', K_LEASES, fp) == 1 then
        -- A second copy of a URL in flight (Bloom mode admits a seed the filters had seen as a
        -- link): it ends here, so that one fingerprint never holds two leases.
        count('skipped')
        count('skipped:duplicate')
      else
        st.tokens = st.tokens - 1
        st.inflight = st.inflight + 1
        redis.call('ZADD', K_INFLIGHT, deadline, fp)
        redis.call('HSET', K_LEASES, fp, d .. '\t' .. worker .. '\t' .. entry)
        out[#out + 1] = d
        out[#out + 1] = entry
        got = got + 1
      end
    end
    save_domain(d, st)
    schedule(d, st)
  end
end

local wait = CLAIM_WAIT.NONE
if got == 0 then
  local r = redis.call('ZRANGE', K_READY, 0, 0, 'WITHSCORES')
  local l = redis.call('ZRANGE', K_DELAYED, 0, 0, 'WITHSCORES')
  local t = nil
  if #r > 0 then t = tonumber(r[2]) end
  local v = redis.call('ZRANGE', K_DUE, 0, 0, 'WITHSCORES')
  if #l > 0 and (t == nil or tonumber(l[2]) < t) then t = tonumber(l[2]) end
  if #v > 0 and tonumber(v[2]) ~= math.huge and (t == nil or tonumber(v[2]) < t) then
    t = tonumber(v[2])
  end
  if t ~= nil then wait = math.max(1, t - NOW) end
end
local res = {got, wait, current_pass()}
for _, v in ipairs(out) do res[#res + 1] = v end
return res
