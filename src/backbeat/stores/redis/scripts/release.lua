-- ARGV: prefix, owner, now, n_runs, (fencing token, run_id) x n_runs, task_id...
-- Released runs (held by owner under those tokens) wait (attempt + 1) from now; released
-- claims put their tasks back as due.
local owner, now = ARGV[2], ARGV[3]
local n_runs = tonumber(ARGV[4])
local run_ids, tokens, task_ids = {}, {}, {}
for i = 5, 4 + 2 * n_runs, 2 do
  tokens[#tokens + 1] = ARGV[i]
  run_ids[#run_ids + 1] = ARGV[i + 1]
end
for i = 5 + 2 * n_runs, #ARGV do
  task_ids[#task_ids + 1] = ARGV[i]
end

local writes, leases, released = {}, {}, {}
for i, found in ipairs(get_keys(keys_of(run_key, run_ids))) do
  local run = found and parse_run(found)
  if run and holds(run, owner, tokens[i]) then
    writes[#writes + 1] = run_key(run_ids[i])
    writes[#writes + 1] = pack_run(tonumber(run[1]) + 1, run[2], run[4], '')
    leases[#leases + 1] = now
    leases[#leases + 1] = run_ids[i]
    released[#released + 1] = run_ids[i]
  end
end
call_keys('MSET', writes)
call_many('ZREM', K_LEASES, released)
call_many('ZADD', K_WAITING, leases)

local changed = #writes > 0
local owners = get_keys(keys_of(claim_key, task_ids))
for i, id in ipairs(task_ids) do
  if owners[i] == owner then
    redis.call('DEL', claim_key(id))
    redis.call('ZREM', K_CLAIMS, id)
    local live = redis.call('HGET', K_TASKS, id)
    if live then
      reschedule(id, parse_live(live))
    else
      redis.call('ZREM', K_SCHEDULE, id)
    end
    changed = true
  end
end
if changed then
  wake()
end
return 0
