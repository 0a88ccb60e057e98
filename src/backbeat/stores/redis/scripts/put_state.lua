-- ARGV: prefix, key, expected version ('0': not stored yet), value JSON, wake ('1': publish a
-- wake-up after the write). Compare-and-set of a state document stored as "version|value".
-- Returns 1 if written.
local key, expected, value = ARGV[2], tonumber(ARGV[3]), ARGV[4]
local raw = redis.call('HGET', K_STATE, key)
local version = 0
if raw then
  version = tonumber(string.match(raw, '^(%d+)|'))
end
if version ~= expected then
  return 0
end
redis.call('HSET', K_STATE, key, (expected + 1) .. '|' .. value)
if ARGV[5] == '1' then
  wake()
end
return 1
