-- Batch API jobs in flight (summarizer/batch.py): a record per job in llm-batches (job id ->
-- JSON) and its poller in llm-batch-pollers (job id -> "worker \t hold-until ms"). A poller
-- refreshes its holds on every poll; a job whose hold lapsed (its worker died) is adopted by
-- the next worker that asks. The docs of a job are leased to "batch:<job id>", not to a worker.
-- ARGV[3] = op, ARGV[4] = worker, ARGV[5] = hold ms, then:
--   take, max:     hold every job this worker polls, and adopt up to max jobs whose hold has
--                  lapsed; returns {id1, record1, id2, record2, ...} of the jobs it now holds
--   put, id, rec:  write a job's record and hold it; only for an unheld job or this worker's
--                  (a poller that lost its job to an adopter must not overwrite it); 1 or 0
--   drop, id:      forget a finished job this worker holds; 1 or 0
--   release, ids:  stop holding these jobs (shutdown: another worker adopts them at once)
local op, worker, hold_ms = ARGV[3], ARGV[4], tonumber(ARGV[5])
local function holder(id)
  local h = redis.call('HGET', K_LLM_BATCH_POLLERS, id)
  if not h then return nil, 0 end
  local w, untl = string.match(h, '^([^\t]*)\t(.*)$')
  return w, tonumber(untl)
end
local function hold(id)
  redis.call('HSET', K_LLM_BATCH_POLLERS, id, worker .. '\t' .. (NOW + hold_ms))
end
if op == 'take' then
  local adopt = tonumber(ARGV[6])
  local flat = redis.call('HGETALL', K_LLM_BATCHES)
  local out = {}
  for i = 1, #flat, 2 do
    local id = flat[i]
    local w, untl = holder(id)
    local mine = w == worker
    if not mine and (w == nil or untl < NOW) and adopt > 0 then
      adopt = adopt - 1
      mine = true
    end
    if mine then
      hold(id)
      out[#out + 1] = id
      out[#out + 1] = flat[i + 1]
    end
  end
  return out
elseif op == 'put' then
  local id = ARGV[6]
  local w = holder(id)
  if w ~= nil and w ~= worker then return 0 end
  redis.call('HSET', K_LLM_BATCHES, id, ARGV[7])
  hold(id)
  return 1
elseif op == 'drop' then
  local id = ARGV[6]
  local w = holder(id)
  if w ~= nil and w ~= worker then return 0 end
  redis.call('HDEL', K_LLM_BATCHES, id)
  redis.call('HDEL', K_LLM_BATCH_POLLERS, id)
  return 1
elseif op == 'release' then
  for i = 6, #ARGV do
    if holder(ARGV[i]) == worker then redis.call('HDEL', K_LLM_BATCH_POLLERS, ARGV[i]) end
  end
  return 1
end
return redis.error_reply('llm_batches: unknown op ' .. tostring(op))
