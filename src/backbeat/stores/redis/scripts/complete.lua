-- ARGV: prefix, owner, then per result "failed|finished_at|retry_at|outcome|run_id"
-- (failed '1'|'0'; retry_at '' = none). Returns the run ids not completed (no longer
-- leased to owner).
local owner = ARGV[2]
local run_ids, results = {}, {}
for i = 3, #ARGV do
  local result = {string.match(ARGV[i], '^([^|]*)|([^|]*)|([^|]*)|([^|]*)|(.*)$')}
  results[#results + 1] = result
  run_ids[#run_ids + 1] = result[5]
end
local stored = get_keys(keys_of(run_key, run_ids))

local lost, finished, task_ids = {}, {}, {}
for i, rid in ipairs(run_ids) do
  local run = stored[i] and parse_run(stored[i])
  if not run or run[3] ~= owner then
    lost[#lost + 1] = rid
  else
    finished[#finished + 1] = {rid, run, results[i]}
    task_ids[#task_ids + 1] = run_task(rid, run[2])
  end
end

-- several runs of one task may finish in one batch: update a single copy of its live fields
local lives, order = {}, {}
for i, found in ipairs(get_many(K_LIVE, task_ids)) do
  if found and not lives[task_ids[i]] then
    lives[task_ids[i]] = parse_live(found)
    order[#order + 1] = task_ids[i]
  end
end

local done, retries, retry_runs = {}, {}, {}
for i, item in ipairs(finished) do
  local rid, run, result = item[1], item[2], item[3]
  local failed, finished_at, retry_at, outcome = result[1], result[2], result[3], result[4]
  if retry_at ~= '' then
    retry_runs[#retry_runs + 1] = run_key(rid)
    retry_runs[#retry_runs + 1] = (tonumber(run[1]) + 1) .. '|' .. run[2] .. '|'
    retries[#retries + 1] = retry_at
    retries[#retries + 1] = rid
  else
    done[#done + 1] = rid
  end
  -- a removed task's runs finish, but there is nothing left to count
  local live = lives[task_ids[i]]
  if live then
    if retry_at == '' and tonumber(live[RUNNING]) > 0 then
      live[RUNNING] = tonumber(live[RUNNING]) - 1
    end
    live[RUNS] = tonumber(live[RUNS]) + 1
    if failed == '1' then
      live[FAILURES] = tonumber(live[FAILURES]) + 1
    end
    live[LAST], live[OUTCOME] = finished_at, outcome
  end
end

local writes, removed = {}, {}
for _, id in ipairs(order) do
  local live = lives[id]
  local quarantined = string.find(live[FLAGS], 'q', 1, true)
  if tonumber(live[RUNNING]) == 0 and live[NRT] == '' and not quarantined
      and redis.call('EXISTS', claim_key(id)) == 0 then
    removed[#removed + 1] = id
  else
    writes[#writes + 1] = id
    writes[#writes + 1] = join_live(live)
  end
end

call_keys('DEL', keys_of(run_key, done))
call_many('ZREM', K_LEASES, done)
call_keys('MSET', retry_runs)
call_many('ZADD', K_LEASES, retries)
call_many('HSET', K_LIVE, writes)
remove_tasks(removed)
if #retries > 0 then
  wake()
end
return lost
