-- The LLM rate limits shared by every summarizer process: two buckets (requests, tokens) kept
-- as GCRA theoretical arrival times, and a pause deadline set when the provider answers 429.
-- ARGV[3] = op: "reserve" (ARGV[4] = estimated tokens, ARGV[5] = request refill per minute,
--                          ARGV[6] = token refill per minute, ARGV[7] = request burst,
--                          ARGV[8] = token burst)
--               "adjust" (ARGV[4] = tokens to give back, negative to take more,
--                         ARGV[5] = token refill per minute)
--               "pause" (ARGV[4] = ms)
-- "reserve" books the earliest slot t >= NOW at which both buckets allow the request and no
-- pause holds, charges the request to the buckets as if it were sent at t, and returns t - NOW
-- in whole ms (rounded up, which moves every slot the same way, so no window gains a request).
-- The caller sleeps that long and sends, without asking again. A refill of 0 means that bucket
-- is unlimited.
--
-- A bucket with burst b refilled every I ms per unit is stored as its theoretical arrival time
-- TAT: the bucket holds b - max(0, TAT - t) / I units at time t (a missing TAT is a full
-- bucket). A request of cost c fits at t when TAT - t <= (b - c) * I; sending it moves TAT to
-- max(TAT, t) + c * I. Because TAT may run ahead of NOW, concurrent callers (in any process: the
-- script is atomic) get successive, properly spaced slots.
--
-- Times are ms as doubles, stored with %.17g (exact): tostring keeps 14 significant digits,
-- which at today's epoch ms (13 digits) rounds each TAT to 0.1 ms, the same way every time for a
-- given interval, so the error would add up request after request (towards a faster rate when
-- it rounds down).
local key = K_LLM
local op = ARGV[3]
local function num(x) return string.format('%.17g', x) end

if op == 'pause' then
  local until_ms = NOW + tonumber(ARGV[4])
  local cur = tonumber(redis.call('HGET', key, 'paused_until')) or 0
  if until_ms > cur then redis.call('HSET', key, 'paused_until', num(until_ms)) end
  return 0
end

if op == 'adjust' then
  local tpm = tonumber(ARGV[5])
  if tpm <= 0 then return 0 end
  local tat = math.max(NOW, tonumber(redis.call('HGET', key, 'tok_tat')) or NOW)
  -- Giving back can at most fill the bucket (TAT = NOW); taking more puts it in debt.
  tat = math.max(NOW, tat - tonumber(ARGV[4]) * 60000 / tpm)
  redis.call('HSET', key, 'tok_tat', num(tat))
  return 0
end

local cost, rpm, tpm = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local rburst, tburst = tonumber(ARGV[7]), tonumber(ARGV[8])
local v = redis.call('HMGET', key, 'req_tat', 'tok_tat', 'paused_until')
local rtat = tonumber(v[1]) or NOW
local ttat = tonumber(v[2]) or NOW
local t = math.max(NOW, tonumber(v[3]) or 0)
local rint, tint = 0, 0
if rpm > 0 then
  rint = 60000 / rpm
  t = math.max(t, rtat - (rburst - 1) * rint)
end
if tpm > 0 then
  tint = 60000 / tpm
  -- A request larger than the whole token burst may go once the bucket is full, never sooner;
  -- its full cost is charged, so the debt is paid before anything else goes.
  t = math.max(t, ttat - (tburst - math.min(cost, tburst)) * tint)
end
if rpm > 0 then redis.call('HSET', key, 'req_tat', num(math.max(rtat, t) + rint)) end
if tpm > 0 then redis.call('HSET', key, 'tok_tat', num(math.max(ttat, t) + cost * tint)) end
-- Less a nanosecond, so that float noise (a burst's TAT - (b - 1) * I landing 1e-12 past NOW)
-- does not turn a slot that is now into a 1 ms wait.
return math.max(0, math.ceil(t - NOW - 1e-6))
