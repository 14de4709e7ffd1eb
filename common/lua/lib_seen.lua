-- The seen set: SPEC.seen is "set" (an exact Redis set, the default) or "bloom".
--
-- Bloom mode keeps a series of Bloom filters as bits in Redis strings (Redis 7 has no
-- RedisBloom module). Filter i holds up to seen_capacity * 2^i URLs at an error rate of
-- seen_error / 2^(i+1), so the error of the whole series stays under seen_error however many
-- filters it grows (RedisBloom's scaling, expansion 2, tightening 1/2). A filter is m bits in
-- strings of at most BLOOM_CHUNK_BITS (far below Redis' 512 MB limit), allocated in full when
-- the filter is created. The k bit positions come from the fingerprint's two 32-bit halves
-- (Kirsch-Mitzenmacher double hashing). Meta (hash K_BLOOM): "filters", and per filter i
-- "m:i", "k:i", "cap:i", "n:i" (URLs added), "ones:i" (bits set); "fp_est" is the expected
-- number of new URLs the filters have wrongly called seen so far: each URL added at a fill
-- where a query errs with probability p stands for p / (1 - p) new URLs dropped.
--
-- Depth-0 URLs (seeds, sitemap entries) are never judged by the filters alone: the exact set
-- holds them, and one that is not in it is admitted whatever the filters say.
local BLOOM_CHUNK_BITS = 134217728 -- 2^27 bits = 16 MiB per string
local LN2SQ = math.log(2) ^ 2
local bloom = nil -- loaded on first use: {filters = {{m, k, cap, n, ones}, ...}}
local bloom_fp_est = 0

local function bloom_chunk(i, c) return K_BLOOM .. ':' .. i .. ':' .. c end

local function bloom_create(i)
  local cap = SPEC.seen_capacity * 2 ^ i
  local p = SPEC.seen_error / 2 ^ (i + 1)
  local m = math.ceil(cap * -math.log(p) / LN2SQ)
  local k = math.max(1, math.ceil(-math.log(p) / math.log(2)))
  local f = {m = m, k = k, cap = cap, n = 0, ones = 0}
  -- Preallocate every chunk by setting its last bit to 0 (the whole string is allocated).
  local chunks = math.ceil(m / BLOOM_CHUNK_BITS)
  for c = 0, chunks - 1 do
    local bits = math.min(BLOOM_CHUNK_BITS, m - c * BLOOM_CHUNK_BITS)
    redis.call('SETBIT', bloom_chunk(i, c), bits - 1, 0)
  end
  redis.call('HSET', K_BLOOM, 'filters', i + 1, 'm:' .. i, m, 'k:' .. i, k, 'cap:' .. i, cap,
    'n:' .. i, 0, 'ones:' .. i, 0)
  bloom.filters[i + 1] = f
  return f
end

local function bloom_load()
  if bloom ~= nil then return end
  bloom = {filters = {}}
  local nf = tonumber(redis.call('HGET', K_BLOOM, 'filters')) or 0
  for i = 0, nf - 1 do
    local v = redis.call('HMGET', K_BLOOM, 'm:' .. i, 'k:' .. i, 'cap:' .. i, 'n:' .. i,
      'ones:' .. i)
    bloom.filters[i + 1] = {m = tonumber(v[1]), k = tonumber(v[2]), cap = tonumber(v[3]),
      n = tonumber(v[4]), ones = tonumber(v[5])}
  end
  if nf == 0 then bloom_create(0) end
end

local function bloom_hashes(fp)
  local h1 = tonumber(string.sub(fp, 1, 8), 16) or 0
  local h2 = tonumber(string.sub(fp, 9, 16), 16) or 0
  if h2 % 2 == 0 then h2 = h2 + 1 end
  return h1, h2
end

local function bloom_bit(f, j, h1, h2)
  local b = (h1 + j * h2) % f.m
  return math.floor(b / BLOOM_CHUNK_BITS), b % BLOOM_CHUNK_BITS
end

local function bloom_has(fp)
  bloom_load()
  local h1, h2 = bloom_hashes(fp)
  for i, f in ipairs(bloom.filters) do
    local all = true
    for j = 0, f.k - 1 do
      local c, off = bloom_bit(f, j, h1, h2)
      if redis.call('GETBIT', bloom_chunk(i - 1, c), off) == 0 then
        all = false
        break
      end
    end
    if all then return true end
  end
  return false
end

-- The probability that a query for a URL never added answers "seen", at the current fill.
local function bloom_error_now()
  local miss = 1
  for _, f in ipairs(bloom.filters) do miss = miss * (1 - (f.ones / f.m) ^ f.k) end
  return 1 - miss
end

local function bloom_add(fp)
  bloom_load()
  local i = #bloom.filters - 1
  local f = bloom.filters[i + 1]
  if f.n >= f.cap then
    i = i + 1
    f = bloom_create(i)
  end
  local p = bloom_error_now()
  bloom_fp_est = bloom_fp_est + p / (1 - p)
  local h1, h2 = bloom_hashes(fp)
  for j = 0, f.k - 1 do
    local c, off = bloom_bit(f, j, h1, h2)
    if redis.call('SETBIT', bloom_chunk(i, c), off, 1) == 0 then f.ones = f.ones + 1 end
  end
  f.n = f.n + 1
  redis.call('HSET', K_BLOOM, 'n:' .. i, f.n, 'ones:' .. i, f.ones)
end

-- Write what this script added to the false-positive estimate (once per script call).
local function bloom_flush()
  if bloom_fp_est > 0 then
    redis.call('HINCRBYFLOAT', K_BLOOM, 'fp_est', tostring(bloom_fp_est))
    bloom_fp_est = 0
  end
end

-- Whether fp was seen. ``exact`` (depth-0 URLs) consults the exact set only, so a false
-- positive of the filters never drops a seed.
local function seen_has(fp, exact)
  if SPEC.seen ~= 'bloom' or exact then return redis.call('SISMEMBER', K_SEEN, fp) == 1 end
  return redis.call('SISMEMBER', K_SEEN, fp) == 1 or bloom_has(fp)
end

-- Mark fp seen. In Bloom mode depth-0 URLs go into the exact set as well as the filters (one
-- the filters already claimed is counted: a seed the filters alone would have dropped, or one
-- found as a link before; the claim script skips a second copy while the first is leased).
local function seen_add(fp, exact)
  if SPEC.seen ~= 'bloom' then
    redis.call('SADD', K_SEEN, fp)
    return
  end
  if exact then redis.call('SADD', K_SEEN, fp) end
  if not bloom_has(fp) then
    bloom_add(fp)
  elseif exact then
    count('seen_exact_rescued')
  end
end
