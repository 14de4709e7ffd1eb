-- Passes and revisits of one shard (docs/revisits.md).
-- ARGV[3] = op:
--   "pass":           the shard's current pass.
--   "set_pass", n:    make n the current pass, started now (never lowers it); returns the pass.
--   "wake", cursor, count:
--                     a new pass: every URL asleep in K_DUE, due or not, goes back to its
--                     domain's queue, except those a sitemap said are unmodified this pass and
--                     those visited since the pass started (so a wake-up cut short by a crash
--                     can be repeated). One ZSCAN step from cursor; returns {next cursor ("0"
--                     when done), woken}.
local op = ARGV[3]
if op == 'pass' then
  return current_pass()
elseif op == 'set_pass' then
  local n = tonumber(ARGV[4])
  if n > current_pass() then
    redis.call('HSET', K_SPEC, PASS_FIELD, n, PASS_STARTED_FIELD, NOW)
  end
  return current_pass()
elseif op == 'wake' then
  local pass = current_pass()
  local started = tonumber(redis.call('HGET', K_SPEC, PASS_STARTED_FIELD)) or 0
  local scan = redis.call('ZSCAN', K_DUE, ARGV[4], 'COUNT', tonumber(ARGV[5]))
  local woken, touched = 0, {}
  local members = scan[2]
  for j = 1, #members, 2 do
    local fp = members[j]
    local v = redis.call('HGET', K_REVISIT, fp)
    local held, fetched = 0, 0
    if v then
      local _, _, f, h = split_revisit(v)
      held, fetched = h, f
    end
    if held ~= pass and fetched < started then
      local d = promote(fp)
      if d then
        woken = woken + 1
        touched[d] = true
      end
    end
  end
  for d, _ in pairs(touched) do
    redis.call('SADD', K_DOMAINS, d)
    schedule(d, load_domain(d))
  end
  return {scan[1], woken}
end
return redis.error_reply('revisit: unknown op ' .. tostring(op))
