-- ARGV: prefix, dead letter (run) id, task_id, fire_time, now.
-- Turns a dead letter into a waiting run of its (stored) task. Returns 'ok', 'gone' (no such
-- dead letter), 'missing' (no such task), 'exists' (that run exists) or 'full' (max_instances).
local rid, id, fire, now = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
if redis.call('HEXISTS', K_DEAD, rid) == 0 then
  return 'gone'
end
local raw = redis.call('HGET', K_LIVE, id)
if not raw then
  return 'missing'
end
local live = parse_live(raw)
if string.find(live[FLAGS], 'q', 1, true) then
  return 'missing'
end
if redis.call('EXISTS', run_key(rid)) == 1 then
  return 'exists'
end
if tonumber(live[RUNNING]) >= tonumber(live[MAX]) then
  return 'full'
end
redis.call('SET', run_key(rid), '1|' .. fire .. '|')
redis.call('ZADD', K_LEASES, now, rid)
live[RUNNING] = tonumber(live[RUNNING]) + 1
redis.call('HSET', K_LIVE, id, join_live(live))
redis.call('HDEL', K_DEAD, rid)
redis.call('HDEL', K_DEAD_TASKS, rid)
wake()
return 'ok'
