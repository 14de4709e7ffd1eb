-- The proxy pool's health, shared by every crawl worker (crawler/proxypool.py).
-- K_PROXIES is a hash: proxy name -> "failures until_ms" (failures in a row, and the time its
-- back-off ends); the field "_down" holds the time the pool was first reported dead.
-- ARGV[3] = op: "fail" (ARGV[4] = proxy name, ARGV[5..] = back-off in ms after failure 1, 2, ...,
--                       computed by Python's curve, common/backoff.py: nothing is written twice)
--               "ok"   (ARGV[4] = proxy name: it worked, its failures are forgotten)
--               "down" (report the pool dead: 1 for the first reporter, 0 after)
--               "read" (every proxy's name, failures and ms left of its back-off)
-- A failure while the proxy is already backed off is the same outage seen by another fetch:
-- it is not counted again, so one dead proxy seen by 50 fetches backs off once, not 50 times.

local op = ARGV[3]

local function health(name)
  local v = redis.call('HGET', K_PROXIES, name)
  if not v then return 0, 0 end
  local f, u = string.match(v, '^(%d+) (%d+)$')
  return tonumber(f) or 0, tonumber(u) or 0
end

if op == 'fail' then
  local name = ARGV[4]
  local fails, untl = health(name)
  if untl > NOW then return {fails, untl - NOW, 0} end
  fails = fails + 1
  local steps = #ARGV - 4
  local delay = math.floor(tonumber(ARGV[4 + math.min(fails, steps)]))
  redis.call('HSET', K_PROXIES, name, string.format('%d %d', fails, NOW + delay))
  return {fails, delay, 1}
elseif op == 'ok' then
  return redis.call('HDEL', K_PROXIES, ARGV[4], '_down')
elseif op == 'down' then
  return redis.call('HSETNX', K_PROXIES, '_down', NOW)
end
local flat = redis.call('HGETALL', K_PROXIES)
local out = {}
for i = 1, #flat, 2 do
  if flat[i] ~= '_down' then
    local f, u = string.match(flat[i + 1], '^(%d+) (%d+)$')
    out[#out + 1] = flat[i]
    out[#out + 1] = tonumber(f) or 0
    out[#out + 1] = math.max(0, (tonumber(u) or 0) - NOW)
  end
end
return out
