-- Settle docs held by one worker. ARGV[3] = worker, then groups of DOC_OP.width fields (kind,
-- fp, reason, record, model, prompt tokens, completion tokens, cost in micro-USD, attempt:
-- offsets DOC_OP.<name>, generated from common/protocol.py DOC_OP_FIELDS). A non-zero attempt
-- must be the lease's, so a late answer for a reaped and re-claimed attempt is stale. Token and cost accounting is done here, in the same atomic step
-- as the summary, so every counted token belongs to a stored doc.
--   "summarized": the record (a summary JSON) is written to the summaries sink under fp
--   "failed":     final failure with a reason; the record, if any, is written too
--   "dead":       failed (counted so) after retries on a passing trouble: also dead-lettered
--                 with its doc, for `distcrawl requeue --docs` (dead_doc, lib_docs_dead.lua)
--   "release":    back to the head of the queue untouched (shutdown)
-- (A computed summary is already in the shared summary cache: summarizer/cache.py stores it,
-- in its own slot, before the doc is settled.)
-- Returns one DOC_RESULT per op: STALE (lease gone or someone else's), SETTLED, REQUEUED.
-- The counter of each final kind (DOC_KIND): an unknown kind is an error, never a new counter.
local DOC_COUNTERS = {[DOC_KIND.SUMMARIZED] = 'docs_summarized', [DOC_KIND.FAILED] = 'docs_failed',
  [DOC_KIND.DEAD] = 'docs_failed'}
local worker = ARGV[3]
for i = 4, #ARGV, DOC_OP.width do  -- (checked before anything is written: no roll back)
  local kind = ARGV[i + DOC_OP.kind]
  if kind ~= DOC_KIND.RELEASE and DOC_COUNTERS[kind] == nil then
    return redis.error_reply('docs_settle: unknown kind ' .. kind)
  end
end
local out = {}
for i = 4, #ARGV, DOC_OP.width do
  local kind, fp = ARGV[i + DOC_OP.kind], ARGV[i + DOC_OP.fp]
  local reason, record = ARGV[i + DOC_OP.reason], ARGV[i + DOC_OP.record]
  local model = ARGV[i + DOC_OP.model]
  local ptok = tonumber(ARGV[i + DOC_OP.prompt_tokens])
  local ctok = tonumber(ARGV[i + DOC_OP.completion_tokens])
  local cost = tonumber(ARGV[i + DOC_OP.cost_micro_usd])
  local attempt = tonumber(ARGV[i + DOC_OP.attempt])
  local lease = redis.call('HGET', K_DOCS_LEASES, fp)
  local w, entry = nil, nil
  if lease then w, entry = string.match(lease, '^([^\t]*)\t(.*)$') end
  if not lease or not holds_lease(w, entry, worker, attempt) then
    out[#out + 1] = DOC_RESULT.STALE
  else
    redis.call('HDEL', K_DOCS_LEASES, fp)
    redis.call('ZREM', K_DOCS_INFLIGHT, fp)
    if kind == DOC_KIND.RELEASE then
      redis.call('LPUSH', K_DOCS, entry)
      out[#out + 1] = DOC_RESULT.REQUEUED
    else
      local counter = DOC_COUNTERS[kind]
      if kind == DOC_KIND.DEAD then
        local _, attempts, doc = split_entry(entry)
        dead_doc(fp, attempts + 1, reason, doc)
      else
        count(counter)
        if reason ~= '' then count(counter .. ':' .. reason) end
      end
      if record ~= '' then redis.call('HSET', K_SUMMARIES, fp, record) end
      if model ~= '' then
        if ptok > 0 then count('llm_prompt_tokens:' .. model, ptok) end
        if ctok > 0 then count('llm_completion_tokens:' .. model, ctok) end
        if cost > 0 then count('llm_cost_micro_usd:' .. model, cost) end
      end
      out[#out + 1] = DOC_RESULT.SETTLED
    end
  end
end
return out
