-- ARGV: prefix, owner, now, lease (microseconds), limit, horizon. Waiting runs are claimable
-- at now and tasks due by horizon (the caller's clock); leases and claims end by the
-- server's clock, and are taken until its now + lease.
-- Returns {runs, run_tasks, tasks, lease_until}: runs
-- flat as run_id, fire_time, attempt (negative when recovered from an expired lease),
-- fencing token (a new one each), then
-- the runs' tasks and the claimed tasks (see snapshots in _lib.lua). Runs go first: they
-- are overdue work already.
local owner, now, lease = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local limit, horizon = tonumber(ARGV[5]), tonumber(ARGV[6])
local store_now = server_now()
local lease_until = us_text(store_now + lease)

-- waiting runs claimable by now (the caller's clock), then leased runs whose lease ended by the
-- server's clock (their owner is presumed dead)
local run_ids = redis.call('ZRANGEBYSCORE', K_WAITING, '-inf', us_text(now), 'LIMIT', 0, limit)
if #run_ids < limit then
  local expired = redis.call('ZRANGEBYSCORE', K_LEASES, '-inf', us_text(store_now), 'LIMIT', 0, limit - #run_ids)
  for _, rid in ipairs(expired) do
    run_ids[#run_ids + 1] = rid
  end
end
local stored = get_keys(keys_of(run_key, run_ids))
local found = 0
for i = 1, #run_ids do
  if stored[i] then
    found = found + 1
  end
end
local token = found > 0 and new_tokens(found) or 0
local runs, run_tasks, writes, leases, gone = {}, {}, {}, {}, {}
for i, rid in ipairs(run_ids) do
  if not stored[i] then
    gone[#gone + 1] = rid
  else
    local run = parse_run(stored[i])
    local attempt, signed = run[1], run[1]
    if run[3] ~= '' then
      -- its owner let the lease expire: presumed dead, this is a new attempt
      attempt = tonumber(attempt) + 1
      signed = -attempt
    end
    writes[#writes + 1] = run_key(rid)
    writes[#writes + 1] = pack_run(attempt, run[2], token, owner)
    leases[#leases + 1] = lease_until
    leases[#leases + 1] = rid
    runs[#runs + 1] = rid
    runs[#runs + 1] = run[2]
    runs[#runs + 1] = signed
    runs[#runs + 1] = token
    token = token + 1
    run_tasks[#run_tasks + 1] = task_of(rid, run[2])
  end
end
call_many('ZREM', K_WAITING, run_ids)
call_many('ZREM', K_LEASES, gone)
call_keys('MSET', writes)
call_many('ZADD', K_LEASES, leases)
local run_records = get_many(K_TASKS, run_tasks)
if #run_tasks > 0 and redis.call('EXISTS', K_DETACHED) == 1 then
  for i = 1, #run_tasks do
    if redis.call('SISMEMBER', K_DETACHED, runs[4 * i - 3]) == 1 then
      run_records[i] = false -- a run of a removed task: not one of a task added again under its id
    end
  end
end
local run_snaps = snapshots(run_tasks, run_records)

-- claims whose owner died between claim_due and fire (ended by the server's clock) first, then
-- unclaimed tasks due by the horizon (the caller's clock)
local claimed, records = {}, {}
local room = limit - #run_tasks
if room > 0 then
  local lapsed = redis.call('ZRANGEBYSCORE', K_CLAIMS, '-inf', us_text(store_now), 'LIMIT', 0, room)
  local found = get_many(K_TASKS, lapsed)
  local dropped = {}
  for i, id in ipairs(lapsed) do
    local take = false
    if found[i] then
      local live = parse_live(found[i])
      take = schedulable(live) and tonumber(live[NRT]) <= horizon
      if not take then
        dropped[#dropped + 1] = {id, live}
      end
    end
    if take then
      records[#claimed + 1] = found[i]
      claimed[#claimed + 1] = id
    end
  end
  call_keys('DEL', keys_of(claim_key, lapsed))
  call_many('ZREM', K_CLAIMS, lapsed)
  for _, item in ipairs(dropped) do
    reschedule(item[1], item[2])
  end
  room = limit - #run_tasks - #claimed
end
if room > 0 then
  local ids = redis.call('ZRANGEBYSCORE', K_SCHEDULE, '-inf', us_text(horizon), 'LIMIT', 0, room)
  local found = get_many(K_TASKS, ids)
  for i, id in ipairs(ids) do
    if found[i] then
      records[#claimed + 1] = found[i]
      claimed[#claimed + 1] = id
    end
  end
  call_many('ZREM', K_SCHEDULE, ids)
end

local by, scores = {}, {}
for i, id in ipairs(claimed) do
  by[2 * i - 1], by[2 * i] = claim_key(id), owner
  scores[2 * i - 1], scores[2 * i] = lease_until, id
end
call_keys('MSET', by)
call_many('ZADD', K_CLAIMS, scores)
local snaps = snapshots(claimed, records)
return {runs, run_snaps, snaps, lease_until}
