-- Settle docs held by one worker. ARGV[3] = worker, then groups of 12: kind, fp, reason, record,
-- model, prompt tokens, completion tokens, cost in micro-USD, attempt, cache key, cache summary,
-- cache unlock. A non-zero attempt must be the lease's, so a late answer for a reaped and
-- re-claimed attempt is stale. Token and cost accounting is done here, in the same atomic step
-- as the summary, so every counted token belongs to a stored doc.
--   "summarized": the record (a summary JSON) is written to the summaries sink under fp
--   "failed":     final failure with a reason; the record, if any, is written too
--   "release":    back to the head of the queue untouched (shutdown)
-- A non-empty cache key stores the summary in the content cache (and drops the key's lock when
-- cache unlock is "1") whether or not the lease is still this worker's: the summary is good
-- for the next doc with the same text either way.
-- Returns one code per op: 0 stale (lease gone or someone else's), 1 settled, 2 requeued.
-- The counter of each final kind (common.docsqueue.DocKind): an unknown kind is an error, never
-- a new counter.
local DOC_COUNTERS = {summarized = 'docs_summarized', failed = 'docs_failed'}
local worker = ARGV[3]
for i = 4, #ARGV, 12 do  -- (checked before anything is written: scripts do not roll back)
  if ARGV[i] ~= 'release' and DOC_COUNTERS[ARGV[i]] == nil then
    return redis.error_reply('docs_settle: unknown kind ' .. ARGV[i])
  end
end
local out = {}
for i = 4, #ARGV, 12 do
  local kind, fp, reason, record = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local model, ptok, ctok, cost = ARGV[i + 4], tonumber(ARGV[i + 5]), tonumber(ARGV[i + 6]),
    tonumber(ARGV[i + 7])
  local attempt = tonumber(ARGV[i + 8])
  local cache_key = ARGV[i + 9]
  if cache_key ~= '' then
    redis.call('HSET', K_SUMMARY_CACHE, cache_key, ARGV[i + 10])
    if ARGV[i + 11] == '1' then redis.call('DEL', summary_lock_key(cache_key)) end
  end
  local lease = redis.call('HGET', K_DOCS_LEASES, fp)
  local w, entry = nil, nil
  if lease then w, entry = string.match(lease, '^([^\t]*)\t(.*)$') end
  if not lease or not holds_lease(w, entry, worker, attempt) then
    out[#out + 1] = 0
  else
    redis.call('HDEL', K_DOCS_LEASES, fp)
    redis.call('ZREM', K_DOCS_INFLIGHT, fp)
    if kind == 'release' then
      redis.call('LPUSH', K_DOCS, entry)
      out[#out + 1] = 2
    else
      local counter = DOC_COUNTERS[kind]
      count(counter)
      if reason ~= '' then count(counter .. ':' .. reason) end
      if record ~= '' then redis.call('HSET', K_SUMMARIES, fp, record) end
      if model ~= '' then
        if ptok > 0 then count('llm_prompt_tokens:' .. model, ptok) end
        if ctok > 0 then count('llm_completion_tokens:' .. model, ctok) end
        if cost > 0 then count('llm_cost_micro_usd:' .. model, cost) end
      end
      out[#out + 1] = 1
    end
  end
end
return out
