-- Write the crawl spec once. ARGV[3] = spec JSON, then field/value pairs for Lua's use.
-- Returns the spec JSON in force (the existing one when the crawl was already initialised).
local existing = redis.call('HGET', K_SPEC, 'json')
if existing then return existing end
redis.call('HSET', K_SPEC, 'json', ARGV[3])
for i = 4, #ARGV, 2 do redis.call('HSET', K_SPEC, ARGV[i], ARGV[i + 1]) end
return ARGV[3]
