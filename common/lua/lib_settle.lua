-- settle_batch(argv, i, worker): settle leases held by one worker, described from argv[i] to
-- the end of argv in groups of SETTLE.width fields (SETTLE.kind, SETTLE.fp ...: the offsets
-- common/protocol.py declares and the generated header gives). A non-zero attempt must be the lease's: a worker's late answer for an
-- attempt that was reaped and claimed again (even by the same worker) is stale.
--   kind "ack":     outcome is done|failed|skipped; reason (a short class) is counted; the
--                   record, if any, is written to the pages sink under fp, and the doc, if any,
--                   is queued for the summarizer, in the same atomic step: a page is recorded
--                   and handed on exactly once, or not at all.
--   kind "retry":   attempts + 1; dead-letter as failed(reason) once max_attempts is reached,
--                   writing the record; else back to the queue after delay_ms. retry_after_ms > 0
--                   also pushes the whole domain back (429/503 Retry-After).
--   kind "release": back to the head of its queue untouched (shutdown).
-- An ack's revisit_ms and revisit, when given, keep the URL's revisit state and put it to sleep
-- (prelude's revisit_set); an ack without them, or a dead letter, puts a URL that has revisit
-- state back to sleep as it was (revisit_resleep).
-- Returns one SETTLE_RESULT per op: STALE (the lease is gone or now someone else's), SETTLED,
-- REQUEUED or DEAD (dead-lettered).
local function settle_batch(argv, i, worker)
  local out = {}
  while i <= #argv do
    local kind, fp = argv[i + SETTLE.kind], argv[i + SETTLE.fp]
    local outcome, reason = argv[i + SETTLE.outcome], argv[i + SETTLE.reason]
    local delay_ms = tonumber(argv[i + SETTLE.delay_ms])
    local retry_after_ms = tonumber(argv[i + SETTLE.retry_after_ms])
    local record, doc = argv[i + SETTLE.record], argv[i + SETTLE.doc]
    local attempt = tonumber(argv[i + SETTLE.attempt])
    local revisit_ms, revisit = argv[i + SETTLE.revisit_ms], argv[i + SETTLE.revisit]
    i = i + SETTLE.width
    local lease = redis.call('HGET', K_LEASES, fp)
    local d, w, entry = nil, nil, nil
    if lease then d, w, entry = split_lease(lease) end
    if not lease or not holds_lease(w, entry, worker, attempt) then
      out[#out + 1] = SETTLE_RESULT.STALE
    else
      redis.call('HDEL', K_LEASES, fp)
      redis.call('ZREM', K_INFLIGHT, fp)
      local st = release_slot(d)
      local _, attempts, payload = split_entry(entry)
      if kind == SETTLE_KIND.ACK then
        count(outcome)
        if reason ~= '' then count(outcome .. ':' .. reason) end
        if record ~= '' then redis.call('HSET', K_PAGES, fp, record) end
        if doc ~= '' then
          redis.call('RPUSH', K_DOCS, fp .. '\t0\t' .. doc)
          count('docs_queued')
        end
        if revisit_ms ~= '' then
          revisit_set(fp, d, tonumber(revisit_ms), revisit)
        else
          revisit_resleep(fp)
        end
        out[#out + 1] = SETTLE_RESULT.SETTLED
      elseif kind == SETTLE_KIND.RETRY then
        attempts = attempts + 1
        count('retries')
        if retry_after_ms > 0 then
          local until_ms = NOW + retry_after_ms
          if until_ms > st['until'] then
            st['until'] = until_ms
            redis.call('HSET', domain_key(d), 'until', tostring(until_ms))
          end
        end
        if attempts >= SPEC.max_attempts then
          dead_letter(fp, d, attempts, payload, reason, record)
          out[#out + 1] = SETTLE_RESULT.DEAD
        else
          local e = fp .. '\t' .. attempts .. '\t' .. payload
          if delay_ms > 0 then
            redis.call('ZADD', K_DELAYED, NOW + delay_ms, d .. '\t' .. e)
          else
            redis.call('RPUSH', queue_key(d), e)
          end
          out[#out + 1] = SETTLE_RESULT.REQUEUED
        end
      else  -- SETTLE_KIND.RELEASE
        redis.call('LPUSH', queue_key(d), entry)
        out[#out + 1] = SETTLE_RESULT.REQUEUED
      end
      schedule(d, st)
    end
  end
  return out
end
