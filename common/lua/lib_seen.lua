-- The seen set: SPEC.seen is "set" (an exact Redis set, the default) or "bloom".
--
-- Bloom mode keeps a series of Bloom filters as bits in Redis strings (Redis 7 has no
-- RedisBloom module). Filter i holds up to seen_capacity * 2^i URLs at an error rate of
-- seen_error / 2^(i+1), so the error of the whole series stays under seen_error however many
-- filters it grows (RedisBloom's scaling, expansion 2, tightening 1/2). A filter is m bits in
-- strings of at most BLOOM_CHUNK_BITS (64 MiB: far below Redis' 512 MB limit), allocated in full when
-- the filter is created. The k bit positions come from the fingerprint's two 32-bit halves
-- (Kirsch-Mitzenmacher double hashing). Meta (hash K_SEEN_BLOOM): "filters", and per filter i
-- "m:i", "k:i", "cap:i", "n:i" (URLs added), "ones:i" (bits set); "fp_est" is the expected
-- number of new URLs the filters have wrongly called seen so far: each URL added at a fill
-- where a query errs with probability p stands for p / (1 - p) new URLs dropped.
--
-- Depth-0 URLs (seeds, sitemap entries) are never judged by the filters alone: the exact set
-- holds them, and one that is not in it is admitted whatever the filters say.
local BLOOM_CHUNK_BITS = 536870912 -- 2^29 bits = 64 MiB per string
local BLOOM_MAX_K = 11
local bloom = nil -- loaded on first use: {filters = {{m, k, cap, n, ones}, ...}}
local bloom_fp_est = 0

local function bloom_chunk(i, c) return K_SEEN_BLOOM .. ':' .. i .. ':' .. c end

local function bloom_create(i)
  local cap = SPEC.seen_capacity * 2 ^ i
  local p = SPEC.seen_error / 2 ^ (i + 1)
  -- k at most BLOOM_MAX_K (each probe is a bit set or read in Redis); m sized for that k:
  -- p = (1 - e^(-k n / m))^k. At 1e-6 that is 4.4 bytes per URL instead of 3.8 with k = 21.
  local k = math.min(BLOOM_MAX_K, math.max(1, math.ceil(-math.log(p) / math.log(2))))
  local m = math.ceil(-k * cap / math.log(1 - p ^ (1 / k)))
  local f = {m = m, k = k, cap = cap, n = 0, ones = 0}
  -- Preallocate every chunk by setting its last bit to 0 (the whole string is allocated).
  local chunks = math.ceil(m / BLOOM_CHUNK_BITS)
  for c = 0, chunks - 1 do
    local bits = math.min(BLOOM_CHUNK_BITS, m - c * BLOOM_CHUNK_BITS)
    redis.call('SETBIT', bloom_chunk(i, c), bits - 1, 0)
  end
  redis.call('HSET', K_SEEN_BLOOM, 'filters', i + 1, 'm:' .. i, m, 'k:' .. i, k, 'cap:' .. i, cap,
    'n:' .. i, 0, 'ones:' .. i, 0)
  bloom.filters[i + 1] = f
  return f
end

local function bloom_load()
  if bloom ~= nil then return end
  bloom = {filters = {}}
  local nf = tonumber(redis.call('HGET', K_SEEN_BLOOM, 'filters')) or 0
  for i = 0, nf - 1 do
    local v = redis.call('HMGET', K_SEEN_BLOOM, 'm:' .. i, 'k:' .. i, 'cap:' .. i, 'n:' .. i,
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

-- The k bit positions of fp in filter f (absolute bit numbers).
local function bloom_offsets(f, h1, h2)
  local offs, m = {}, f.m
  for j = 1, f.k do offs[j] = (h1 + (j - 1) * h2) % m end
  return offs
end

-- Read (op "GET") or set (op "SET") the bits at offs of filter i; returns the bits' values
-- (old values for SET). A filter in one string (up to BLOOM_CHUNK_BITS: most of them) takes
-- one BITFIELD call for all k bits, a split one one call per bit.
local function bloom_bits(i, f, offs, op)
  local n = #offs
  if f.m <= BLOOM_CHUNK_BITS then
    local args, w = {}, (op == 'SET') and 4 or 3
    for j = 1, n do
      local at = (j - 1) * w
      args[at + 1], args[at + 2], args[at + 3] = op, 'u1', offs[j]
      if w == 4 then args[at + 4] = 1 end
    end
    return redis.call('BITFIELD', bloom_chunk(i, 0), unpack(args))
  end
  local out = {}
  for j = 1, n do
    local key = bloom_chunk(i, math.floor(offs[j] / BLOOM_CHUNK_BITS))
    local off = offs[j] % BLOOM_CHUNK_BITS
    if op == 'SET' then
      out[j] = redis.call('SETBIT', key, off, 1)
    else
      out[j] = redis.call('GETBIT', key, off)
    end
  end
  return out
end

-- The last filter's unset bits of the last fp asked about: bloom_add of that fp (the usual
-- sequence: has, then add) sets only those, at half fill half the writes.
local last_fp, last_filter, last_unset = nil, nil, nil

local function bloom_has(fp)
  bloom_load()
  local h1, h2 = bloom_hashes(fp)
  local nf = #bloom.filters
  for i, f in ipairs(bloom.filters) do
    local offs = bloom_offsets(f, h1, h2)
    local bits = bloom_bits(i - 1, f, offs, 'GET')
    local unset = {}
    for j = 1, #bits do
      if bits[j] == 0 then unset[#unset + 1] = offs[j] end
    end
    if #unset == 0 then return true end
    if i == nf then last_fp, last_filter, last_unset = fp, i, unset end
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
  local offs
  if last_fp == fp and last_filter == i + 1 then
    offs = last_unset
  else
    offs = bloom_offsets(f, bloom_hashes(fp))
  end
  last_fp = nil
  local turned = 0
  for _, old in ipairs(bloom_bits(i, f, offs, 'SET')) do
    if old == 0 then turned = turned + 1 end
  end
  f.ones = f.ones + turned
  f.n = f.n + 1
  f.dirty = true
end

-- Write what this script changed: the filters' counts and the false-positive estimate.
local function bloom_flush()
  if bloom == nil then return end
  for i, f in ipairs(bloom.filters) do
    if f.dirty then
      redis.call('HSET', K_SEEN_BLOOM, 'n:' .. (i - 1), f.n, 'ones:' .. (i - 1), f.ones)
      f.dirty = false
    end
  end
  if bloom_fp_est > 0 then
    redis.call('HINCRBYFLOAT', K_SEEN_BLOOM, 'fp_est', tostring(bloom_fp_est))
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
