-- dead_doc(fp, attempts, reason, doc): dead-letter a doc whose summarizers gave up on a passing
-- trouble (DOC_KIND.DEAD) or died holding it too often (the reaper's lease_expired). It counts
-- as failed (docs_failed, docs_failed:<reason>), and docs-dead keeps
--   "fp \t attempts \t reason \t url \t doc"
-- so that `distcrawl requeue --docs` (docs_requeue.lua) can queue it again. The doc (its
-- compressed text) is kept while the shard holds fewer than max_docs_backlog of them
-- (counter docs_dead_texts): dead docs are work waiting for a replay and get the same bound as
-- the docs waiting for a summarizer, so an LLM down for a day never fills Redis. Past the
-- bound the entry ends with "" (the doc cannot be replayed; its URL and reason stay).
-- Returns the doc decoded (a table, or nil if it is not JSON) for the caller's record.
local function dead_doc(fp, attempts, reason, doc)
  local ok, parsed = pcall(cjson.decode, doc)
  if not ok or type(parsed) ~= 'table' then parsed = nil end
  local url = parsed and type(parsed.url) == 'string' and parsed.url or ''
  local kept = tonumber(redis.call('HGET', K_COUNTS, 'docs_dead_texts')) or 0
  local keep = SPEC.max_docs_backlog <= 0 or kept < SPEC.max_docs_backlog
  if keep then count('docs_dead_texts') end
  redis.call('RPUSH', K_DOCS_DEAD, fp .. '\t' .. attempts .. '\t' .. reason .. '\t' .. url
    .. '\t' .. (keep and doc or ''))
  count('docs_failed')
  if reason ~= '' then count('docs_failed:' .. reason) end
  return parsed
end
