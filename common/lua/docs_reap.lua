-- Return docs whose summarizer died (lease expired) to the queue with attempts + 1, or fail
-- them (docs_failed:lease_expired) after the crawl's max_doc_leases: a failed summary record goes
-- to the summaries sink and the doc to docs-dead (dead_doc in lib_docs_dead.lua: with its text
-- up to the shard's bound, for `distcrawl requeue --docs`).
-- ARGV[3] = the most to reap; ARGV[4], if given, replaces NOW as the cut-off ('+inf': every
-- lease, for a store whose holders are all known dead). Returns {requeued, dead}.
local due = (ARGV[4] ~= nil and ARGV[4] ~= '') and ARGV[4] or NOW
local expired = redis.call('ZRANGEBYSCORE', K_DOCS_INFLIGHT, '-inf', due, 'LIMIT', 0,
  tonumber(ARGV[3]))
local requeued, dead = 0, 0
for _, fp in ipairs(expired) do
  local lease = redis.call('HGET', K_DOCS_LEASES, fp)
  redis.call('ZREM', K_DOCS_INFLIGHT, fp)
  if lease then
    redis.call('HDEL', K_DOCS_LEASES, fp)
    local _, entry = string.match(lease, '^([^\t]*)\t(.*)$')
    local _, attempts, doc = split_entry(entry)
    attempts = attempts + 1
    count('docs_reaped')
    if attempts >= SPEC.max_doc_leases then
      local parsed = dead_doc(fp, attempts, 'lease_expired', doc)
      local url = parsed and type(parsed.url) == 'string' and parsed.url or ''
      local title = parsed and parsed.title or nil
      redis.call('HSET', K_SUMMARIES, fp, cjson.encode({url = url, title = title,
        outcome = 'failed', reason = 'lease_expired', attempts = attempts}))
      dead = dead + 1
    else
      redis.call('RPUSH', K_DOCS, fp .. '\t' .. attempts .. '\t' .. doc)
      requeued = requeued + 1
    end
  end
end
return {requeued, dead}
