-- admit_batch(argv, i): admit a batch of canonical URLs described from argv[i] on:
--   nrej, then nrej x (reason, count) rejected by the caller and counted on its behalf,
--   then ncand, then ncand groups of 4: domain, fp, depth, payload.
-- Depth-0 URLs (seeds) are checked against the exact seen set even in Bloom mode (lib_seen).
-- Returns one code per URL (1 admitted, 0 duplicate, 2 max_depth, 3 max_pages,
-- 4 max_domain_pages) and the index after the section.
local function admit_batch(argv, i)
  local nrej = tonumber(argv[i])
  i = i + 1
  for _ = 1, nrej do
    count('rejected:' .. argv[i], tonumber(argv[i + 1]))
    i = i + 2
  end

  local ncand = tonumber(argv[i])
  i = i + 1
  local last = i + 4 * ncand - 1
  local out = {}
  local admitted = tonumber(redis.call('HGET', K_COUNTS, 'admitted')) or 0
  local touched = {}
  while i <= last do
    local d, fp, depth, payload = argv[i], argv[i + 1], tonumber(argv[i + 2]), argv[i + 3]
    i = i + 4
    local code = 1
    if SPEC.max_depth >= 0 and depth > SPEC.max_depth then
      code = 2
    elseif seen_has(fp, depth == 0) then
      code = 0
    elseif SPEC.max_pages > 0 and admitted >= SPEC.max_pages then
      code = 3
    elseif SPEC.max_domain_pages > 0 and
        (tonumber(redis.call('HGET', domain_key(d), 'admitted')) or 0) >= SPEC.max_domain_pages then
      code = 4
    end
    if code == 1 then
      seen_add(fp, depth == 0)
      redis.call('RPUSH', queue_key(d), fp .. '\t0\t' .. payload)
      redis.call('HINCRBY', domain_key(d), 'admitted', 1)
      admitted = admitted + 1
      touched[d] = true
    end
    out[#out + 1] = code
  end

  local names = {[0] = 'rejected:duplicate', [2] = 'rejected:max_depth',
    [3] = 'rejected:max_pages', [4] = 'rejected:max_domain_pages'}
  local tally = {}
  for _, code in ipairs(out) do tally[code] = (tally[code] or 0) + 1 end
  for code, n in pairs(tally) do
    if code == 1 then count('admitted', n) else count(names[code], n) end
  end
  for d, _ in pairs(touched) do
    redis.call('SADD', K_DOMAINS, d)
    schedule(d, load_domain(d))
  end
  bloom_flush()
  return out, i
end
