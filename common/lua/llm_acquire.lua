-- The LLM rate limits shared by every summarizer process: two token buckets (requests per
-- minute, tokens per minute) and a pause deadline set when the provider answers 429.
-- ARGV[3] = op: "take" (ARGV[4] = estimated tokens, ARGV[5] = rpm, ARGV[6] = tpm,
--                       ARGV[7] = request burst, ARGV[8] = token burst)
--               "adjust" (ARGV[4] = tokens to give back, negative to take more)
--               "pause" (ARGV[4] = ms)
-- "take" returns 0 when the request may go now (its cost is taken), else the ms to wait.
-- A limit of 0 means unlimited.
local key = P .. 'llm'
local op = ARGV[3]
if op == 'pause' then
  local until_ms = NOW + tonumber(ARGV[4])
  local cur = tonumber(redis.call('HGET', key, 'paused_until')) or 0
  if until_ms > cur then redis.call('HSET', key, 'paused_until', tostring(until_ms)) end
  return 0
end
local v = redis.call('HMGET', key, 'req', 'tok', 'ts', 'paused_until')
local ts = tonumber(v[3]) or NOW
local elapsed = math.max(0, NOW - ts)
if op == 'adjust' then
  local tok = (tonumber(v[2]) or 0) + tonumber(ARGV[4])
  redis.call('HSET', key, 'tok', tostring(tok))
  return 0
end
local cost, rpm, tpm = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local rburst, tburst = tonumber(ARGV[7]), tonumber(ARGV[8])
local req = math.min(rburst, (tonumber(v[1]) or rburst) + elapsed * rpm / 60000)
local tok = math.min(tburst, (tonumber(v[2]) or tburst) + elapsed * tpm / 60000)
local paused = tonumber(v[4]) or 0
local wait = 0
if paused > NOW then wait = paused - NOW end
-- A request larger than the whole token burst may go once the bucket is full, never sooner.
local need_tok = math.min(cost, tburst)
if rpm > 0 and req < 1 then wait = math.max(wait, math.ceil((1 - req) * 60000 / rpm)) end
if tpm > 0 and tok < need_tok then
  wait = math.max(wait, math.ceil((need_tok - tok) * 60000 / tpm))
end
if wait == 0 then
  if rpm > 0 then req = req - 1 end
  if tpm > 0 then tok = tok - cost end
end
redis.call('HSET', key, 'req', tostring(req), 'tok', tostring(tok), 'ts', tostring(NOW))
return wait
