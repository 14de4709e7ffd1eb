-- Put dead letters back in their domains' queues with fresh attempts (`distcrawl requeue`).
-- ARGV[3] = the reason to match, ARGV[4] = the domain to match ("" = any), ARGV[5] = the most
-- entries to look at in this call (the caller loops: a million dead letters never hold Redis).
--
-- Entries ("fp \t domain \t attempts \t reason \t payload", written by dead_letter in
-- prelude.lua) are taken from the head of the dead list; a match goes to the tail of its
-- domain's queue as "fp \t 0 \t payload", any other entry to the tail of the dead list. At most
-- LLEN entries are looked at, so one call never sees an entry twice, and a caller that looks
-- at as many entries over its calls as the list held at first has seen each of them once.
--
-- A requeued URL undoes its dead_letter: failed, failed:<reason> and dead_letters go down by
-- one (its queue entry makes pending one more: the equation holds), requeued goes up, and its
-- failed page record is deleted (it is pending again; with a folder or S3 sink that record
-- would win over the segment line of its next fetch). admitted, and so the max_pages and
-- max_domain_pages caps, are untouched. Each domain touched is scheduled (ready once its
-- bucket and back-off allow).
-- Returns {length at the start, looked at, requeued, 0, reason1, n1, reason2, n2, ...} (the
-- 0: what docs_requeue.lua answers there, matches it could not replay; a URL always can be).
local want_reason, want_domain = ARGV[3], ARGV[4]
local length = redis.call('LLEN', K_DEAD)
local limit = math.min(tonumber(ARGV[5]), length)
local requeued = 0
local reasons, touched = {}, {}
for _ = 1, limit do
  local e = redis.call('LPOP', K_DEAD)
  if not e then break end
  local fp, d, _, reason, payload = string.match(e,
    '^([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$')
  if fp and (want_reason == '' or reason == want_reason)
      and (want_domain == '' or d == want_domain) then
    redis.call('RPUSH', queue_key(d), fp .. '\t0\t' .. payload)
    redis.call('SADD', K_DOMAINS, d)
    redis.call('HDEL', K_PAGES, fp)
    -- (a revisit that was dead-lettered sleeps until its next visit: this is that visit)
    redis.call('ZREM', K_DUE, fp)
    unfail('', reason, 'dead_letters', reasons)
    touched[d] = true
    requeued = requeued + 1
  else
    redis.call('RPUSH', K_DEAD, e)
  end
end
for d, _ in pairs(touched) do schedule(d, load_domain(d)) end
return append_reasons({length, limit, requeued, 0}, reasons)
