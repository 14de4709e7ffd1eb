-- admit_batch(argv, i): admit a batch of canonical URLs described from argv[i] on:
--   nrej, then nrej x (reason, count) rejected by the caller and counted on its behalf,
--   then ncand, then ncand groups of ADMIT.width: domain, fp, depth, payload, lastmod_ms
--   (ADMIT.<name>).
-- Depth-0 URLs (seeds) are checked against the exact seen set even in Bloom mode (lib_seen).
-- Returns one ADMIT_CODE per URL and the index after the section.
-- A sitemap lists fp, known and asleep, as modified at lastmod (ms): modified since its last
-- visit, it is due now; not modified, it sleeps through this pass (a new pass's wake-up leaves
-- it; its own schedule, if any, stands).
local function sitemap_hint(fp, lastmod)
  local v = redis.call('HGET', K_REVISIT, fp)
  if not v or not redis.call('ZSCORE', K_DUE, fp) then return end
  local d, interval, fetched, _, payload = split_revisit(v)
  if lastmod > fetched then
    redis.call('ZADD', K_DUE, NOW, fp)
    count('sitemap_modified')
  else
    redis.call('HSET', K_REVISIT, fp, join_revisit(d, interval, fetched, current_pass(), payload))
    count('sitemap_unmodified')
  end
end

local function admit_batch(argv, i)
  local nrej = tonumber(argv[i])
  i = i + 1
  for _ = 1, nrej do
    count('rejected:' .. argv[i], tonumber(argv[i + 1]))
    i = i + 2
  end

  local ncand = tonumber(argv[i])
  i = i + 1
  local last = i + ADMIT.width * ncand - 1
  local out = {}
  -- (max_pages counts URLs: a revisit is admitted again, but it is not a new page)
  local c = redis.call('HMGET', K_COUNTS, 'admitted', 'revisits')
  local admitted = (tonumber(c[1]) or 0) - (tonumber(c[2]) or 0)
  local touched = {}
  while i <= last do
    local d, fp = argv[i + ADMIT.domain], argv[i + ADMIT.fp]
    local depth, payload = tonumber(argv[i + ADMIT.depth]), argv[i + ADMIT.payload]
    local lastmod = tonumber(argv[i + ADMIT.lastmod_ms])
    i = i + ADMIT.width
    local code = ADMIT_CODE.ADMITTED
    if SPEC.max_depth >= 0 and depth > SPEC.max_depth then
      code = ADMIT_CODE.MAX_DEPTH
    elseif seen_has(fp, depth == 0) then
      code = ADMIT_CODE.DUPLICATE
    elseif SPEC.max_pages > 0 and admitted >= SPEC.max_pages then
      code = ADMIT_CODE.MAX_PAGES
    elseif SPEC.max_domain_pages > 0 and
        (tonumber(redis.call('HGET', domain_key(d), 'admitted')) or 0) >= SPEC.max_domain_pages then
      code = ADMIT_CODE.MAX_DOMAIN_PAGES
    end
    if code == ADMIT_CODE.DUPLICATE and lastmod > 0 then sitemap_hint(fp, lastmod) end
    if code == ADMIT_CODE.ADMITTED then
      seen_add(fp, depth == 0)
      redis.call('RPUSH', queue_key(d), fp .. '\t0\t' .. payload)
      redis.call('HINCRBY', domain_key(d), 'admitted', 1)
      admitted = admitted + 1
      touched[d] = true
    end
    out[#out + 1] = code
  end

  local names = {}  -- 'rejected:duplicate' ... from the codes' names
  for name, code in pairs(ADMIT_CODE) do names[code] = 'rejected:' .. string.lower(name) end
  local tally = {}
  for _, code in ipairs(out) do tally[code] = (tally[code] or 0) + 1 end
  for code, n in pairs(tally) do
    if code == ADMIT_CODE.ADMITTED then count('admitted', n) else count(names[code], n) end
  end
  for d, _ in pairs(touched) do
    redis.call('SADD', K_DOMAINS, d)
    schedule(d, load_domain(d))
  end
  bloom_flush()
  return out, i
end
