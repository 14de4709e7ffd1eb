-- Helpers of the two requeue scripts (requeue.lua, docs_requeue.lua).

-- Take one back from a counter; one that reaches 0 is deleted (as if never counted), so that
-- status lists no "http_503 0" once every such failure was requeued.
local function uncount(field)
  if redis.call('HINCRBY', K_COUNTS, field, -1) <= 0 then
    redis.call('HDEL', K_COUNTS, field)
  end
end

-- Undo a dead letter's failure counts (``prefix`` "" for URLs, "docs_" for docs) and its
-- holding count ``held`` (dead_letters, docs_dead_texts); count it requeued, by reason.
local function unfail(prefix, reason, held, reasons)
  uncount(prefix .. 'failed')
  if reason ~= '' then uncount(prefix .. 'failed:' .. reason) end
  uncount(held)
  count(prefix .. 'requeued')
  reasons[reason] = (reasons[reason] or 0) + 1
end

-- The answer's tail: how many were requeued for each reason, flat (reason1, n1, ...).
local function append_reasons(out, reasons)
  for reason, n in pairs(reasons) do
    out[#out + 1] = reason
    out[#out + 1] = n
  end
  return out
end
