-- Settle a batch of leases: ARGV[3] = worker id, then ops (see settle_batch in lib_settle.lua).
return settle_batch(ARGV, 4, ARGV[3])
