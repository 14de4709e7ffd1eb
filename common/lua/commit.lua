-- Everything one or more finished pages leave behind, in one atomic step:
-- ARGV[3] = worker id, ARGV[4] = n, then n fingerprints to mark seen (redirect hops), then an
-- admit section (lib_admit.lua) for the links found, then settle ops (lib_settle.lua) for the
-- pages. Links are admitted before their page is acked, in the same script, so a page is never
-- done while its links are lost. Returns {admit codes, settle results}.
local worker = ARGV[3]
local nseen = tonumber(ARGV[4])
for j = 5, 4 + nseen do seen_add(ARGV[j], false) end
local codes, i = admit_batch(ARGV, 5 + nseen)
local results = settle_batch(ARGV, i, worker)
return {codes, results}
