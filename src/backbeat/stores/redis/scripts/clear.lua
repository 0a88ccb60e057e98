-- ARGV: prefix, batch size. Removes a batch of tasks and runs; returns how many are left.
local batch = tonumber(ARGV[2])
local ids = index_page('', batch)
if #ids == 0 then -- records the index lost (written by hand): found by a scan
  local found = redis.call('HSCAN', K_TASKS, 0, 'COUNT', batch)[2]
  for i = 1, #found, 2 do
    ids[#ids + 1] = found[i]
  end
end
remove_tasks(ids)
for _, key in ipairs({K_LEASES, K_WAITING}) do
  local runs = redis.call('ZRANGE', key, 0, batch - 1)
  call_keys('DEL', keys_of(run_key, runs))
  call_keys('DEL', keys_of(function(rid) return buffered_key(task_of(rid)) end, runs))
  call_many('ZREM', key, runs)
end
local left = redis.call('HLEN', K_TASKS) + redis.call('ZCARD', K_LEASES) + redis.call('ZCARD', K_WAITING)
if left == 0 then
  redis.call('DEL', K_TASKS, K_IDX, bucket_key(''), K_RECENT, K_TAGS, K_QUARANTINE, K_SCHEDULE, K_CLAIMS, K_DEAD,
    K_DEAD_TASKS, K_STATE, K_ORPHANED, K_DETACHED)
  -- the (empty) orphaned index is complete: no scan of the tasks when the store is next opened
  redis.call('SET', P .. 'orphans_indexed', '1')
end
return left
