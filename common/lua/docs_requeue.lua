-- Put dead docs back in the docs queue with fresh attempts (`distcrawl requeue --docs`).
-- ARGV[3] = the reason to match, ARGV[4] = the domain (the URL's host[:port]) to match ("" =
-- any), ARGV[5] = the most entries to look at in this call (the caller loops).
--
-- Entries ("fp \t attempts \t reason \t url \t doc", written by dead_doc in lib_docs_dead.lua)
-- are taken from the head of docs-dead and looked at as requeue.lua does (at most LLEN per
-- call, non-matches to the tail). A match that kept its doc goes to the tail of the docs queue
-- as "fp \t 0 \t doc": docs_failed and docs_failed:<reason> go down by one (the queue entry makes
-- pending one more: queued = summarized + failed + pending holds), docs_dead_texts too (room for
-- the next dead doc's text), docs_requeued goes up, and its failed summary record is deleted (it
-- is pending again). A match that kept no doc (it died past the bound, or before dead docs kept
-- their text) cannot be replayed: it stays, counted in the answer.
-- Returns {length at the start, looked at, requeued, kept no doc, reason1, n1, ...}.
local want_reason, want_domain = ARGV[3], ARGV[4]
local length = redis.call('LLEN', K_DOCS_DEAD)
local limit = math.min(tonumber(ARGV[5]), length)
local requeued, textless = 0, 0
local reasons = {}
for _ = 1, limit do
  local e = redis.call('LPOP', K_DOCS_DEAD)
  if not e then break end
  local fp, _, reason, url, doc = string.match(e, '^([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$')
  if not fp then  -- the entry of a doc that died before dead docs kept their text
    fp, _, reason, url = string.match(e, '^([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$')
    doc = ''
  end
  local host = url and string.match(url, '^[^:/]*://([^/]*)') or nil
  local match = fp and (want_reason == '' or reason == want_reason)
    and (want_domain == '' or host == want_domain)
  if match and doc ~= '' then
    redis.call('RPUSH', K_DOCS, fp .. '\t0\t' .. doc)
    redis.call('HDEL', K_SUMMARIES, fp)
    unfail('docs_', reason, 'docs_dead_texts', reasons)
    requeued = requeued + 1
  else
    if match then textless = textless + 1 end
    redis.call('RPUSH', K_DOCS_DEAD, e)
  end
end
return append_reasons({length, limit, requeued, textless}, reasons)
