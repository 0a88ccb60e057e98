-- ARGV: prefix, dead letter (run) id, task_id, fire_time, now.
-- Turns a dead letter into a waiting run of its (stored) task. Returns 'ok', 'gone' (no such
-- dead letter), 'missing' (no such task), 'exists' (that run exists) or 'full' (max_instances).
local rid = ARGV[2]
if redis.call('HEXISTS', K_DEAD, rid) == 0 then
  return 'gone'
end
local status = add_waiting_run(ARGV[3], rid, ARGV[4], ARGV[5])
if status == 'ok' then
  redis.call('HDEL', K_DEAD, rid)
  redis.call('HDEL', K_DEAD_TASKS, rid)
end
return status
