-- ARGV: prefix, task_id, expected_version, doc, set_nrt ('1'|'0'), nrt, flags, max, tags.
-- Returns {'missing'}, {'conflict'} (changed since it was read) or {'ok', task}
-- (task: its id, live fields and document, see snapshots in _lib.lua).
local id, expected, doc = ARGV[2], ARGV[3], ARGV[4]
local raw = redis.call('HGET', K_TASKS, id)
if not raw then
  return {'missing'}
end
local live = parse_live(raw)
if string.find(live[FLAGS], 'q', 1, true) then
  return {'missing'}
end
if live[VER] ~= expected then
  return {'conflict'}
end
-- next_run_time is written only when the caller changed it: a fire() since the read may
-- have advanced it, and writing back the old value would run a fire time twice
if ARGV[5] == '1' then
  live[NRT] = ARGV[6]
end
live[VER] = tonumber(live[VER]) + 1
live[FLAGS], live[MAX] = ARGV[7], ARGV[8]
index_orphaned(id, live[FLAGS])
live[10] = doc
local packed = join_live(live)
redis.call('HSET', K_TASKS, id, packed)

for _, tag in ipairs(decode_tags(redis.call('HGET', K_TAGS, id))) do
  redis.call('ZREM', tag_key(tag), id)
end
if ARGV[9] == '' then
  redis.call('HDEL', K_TAGS, id)
else
  redis.call('HSET', K_TAGS, id, ARGV[9])
  for _, tag in ipairs(decode_tags(ARGV[9])) do
    redis.call('ZADD', tag_key(tag), 0, id)
  end
end
reschedule(id, live)
wake()
local snap = snapshots({id}, {packed})
return {'ok', snap}
