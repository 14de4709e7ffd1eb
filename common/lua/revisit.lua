-- Passes and revisits of one shard (docs/revisits.md).
-- ARGV[3] = op:
--   "pass":           the shard's current pass.
--   "set_pass", n:    make n the current pass (never lowers it); returns the pass.
--   "wake", cursor, count:
--                     a new pass: every URL asleep in K_DUE, due or not, goes back to its
--                     domain's queue, except those a sitemap said are unmodified this pass. One
--                     ZSCAN step from cursor; returns {next cursor ("0" when done), woken}.
local op = ARGV[3]
if op == 'pass' then
  return current_pass()
elseif op == 'set_pass' then
  local n = math.max(tonumber(ARGV[4]), current_pass())
  redis.call('HSET', K_SPEC, PASS_FIELD, n)
  return n
elseif op == 'wake' then
  local pass = current_pass()
  local scan = redis.call('ZSCAN', K_DUE, ARGV[4], 'COUNT', tonumber(ARGV[5]))
  local woken, touched = 0, {}
  local members = scan[2]
  for j = 1, #members, 2 do
    local fp = members[j]
    local v = redis.call('HGET', K_REVISIT, fp)
    local held = v and select(4, split_revisit(v)) or 0
    if held ~= pass then
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
