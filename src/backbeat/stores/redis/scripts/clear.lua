-- ARGV: prefix, batch size. Removes a batch of tasks and runs; returns how many are left.
local batch = tonumber(ARGV[2])
remove_tasks(redis.call('ZRANGE', K_IDS, 0, batch - 1))
local runs = redis.call('ZRANGE', K_LEASES, 0, batch - 1)
call_keys('DEL', keys_of(run_key, runs))
call_keys('DEL', keys_of(function(rid) return buffered_key(task_of(rid)) end, runs))
call_many('ZREM', K_LEASES, runs)
local left = redis.call('ZCARD', K_IDS) + redis.call('ZCARD', K_LEASES)
if left == 0 then
  redis.call('DEL', K_TASKS, K_LIVE, K_TAGS, K_QUARANTINE, K_SCHEDULE, K_DEAD, K_DEAD_TASKS, K_STATE, K_ORPHANED)
  -- the (empty) orphaned index is complete: no scan of the tasks when the store is next opened
  redis.call('SET', P .. 'orphans_indexed', '1')
end
return left
