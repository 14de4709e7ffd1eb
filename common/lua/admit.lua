-- Admit a batch of canonical URLs: see admit_batch in lib_admit.lua (ARGV from index 3).
local codes = admit_batch(ARGV, 3)
return codes
