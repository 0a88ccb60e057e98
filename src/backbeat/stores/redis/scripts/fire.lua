-- ARGV: prefix, owner, lease (microseconds: runs are leased until the server's now + lease),
-- a buffered run's lease end (microseconds), then the decisions in one argument, each
-- "n|claimed_version|next_run_time|buffers|fire_time| x n" then the byte 0xFE, the task_id and
-- the byte 0xFF, bytes no UTF-8 text holds (next_run_time '' = none; buffers as admit() takes it;
-- a run's id is task_id .. '@' .. fire_time, as model.run_id_for makes it). One argument, not
-- one per decision: the client encodes each argument in Python.
-- Returns {lease_until, statuses, first_token}: statuses is one string: per decision, comma-separated, '' if the task is
-- no longer claimed by owner, else 'R' (task removed) or '-' then a letter per fire time: c created,
-- b buffered, s skipped (refused by the overlap policy), x that run exists already (one a removed
-- task left is adopted: counted as this task's). The created runs'
-- fencing tokens are first_token, first_token + 1, ... in the order of their 'c's.
local owner, lease_until, buffered_until = ARGV[2], us_text(server_now() + tonumber(ARGV[3])), ARGV[4]
local decisions, ids = {}, {}
local packed_all, at = ARGV[5], 1
while at <= #packed_all do
  -- matched where it starts in the argument, not cut out first (as complete.lua's results);
  -- its fields end at the entry's end byte, never in the next entry, and its fire times at 0xFE,
  -- never in its task id (which may hold a '|')
  local n, ver, nrt, buffers, spelled, id, after = string.match(packed_all, '^(%d+)|([^|\255]*)|([^|\255]*)|(%-?%d+)|([^\254\255]*)\254([^\254\255]*)\255()', at)
  if not after then
    error('backbeat: a decision of a fire cannot be read')
  end
  at = after
  local fires = {}
  local start = 1
  for j = 1, NUMBER[n] or tonumber(n) do
    local stop = string.find(spelled, '|', start, true)
    if not stop then
      start = -1 -- fewer fire times than n
      break
    end
    fires[j] = string.sub(spelled, start, stop - 1)
    start = stop + 1
  end
  if start ~= #spelled + 1 then
    error('backbeat: decision ' .. (#decisions + 1) .. ' of a fire counts ' .. n .. ' fire times, not the '
      .. select(2, string.gsub(spelled, '|', '')) .. ' it holds')
  end
  decisions[#decisions + 1] = {id, ver, nrt, fires, NUMBER[buffers] or tonumber(buffers)}
  ids[#ids + 1] = id
end
local owners = get_keys(keys_of(claim_key, ids))
local lives = get_many(K_TASKS, ids)

-- which of the runs to create exist already (one lookup for the whole batch); the main loop
-- below takes the runs' ids and keys from here, in the same order
local run_ids = {}
for i, decision in ipairs(decisions) do
  if owners[i] == owner and lives[i] then
    for _, fire in ipairs(decision[4]) do
      run_ids[#run_ids + 1] = decision[1] .. '@' .. fire
    end
  end
end
local run_keys = keys_of(run_key, run_ids)
local existing = {}
for i, found in ipairs(get_keys(run_keys)) do
  if found then
    existing[run_ids[i]] = true
  end
end
-- a run a removed task left (remove.lua) under an id this task fires again runs that fire time,
-- now as this task's run (adopted: counted, its task snapshot this task's); an id whose run is
-- gone (ended by a worker older than the detached set) is forgotten before it names a new run
local adopted = {}
if #run_ids > 0 and redis.call('EXISTS', K_DETACHED) == 1 then
  for _, rid in ipairs(run_ids) do
    if redis.call('SREM', K_DETACHED, rid) == 1 and existing[rid] then
      adopted[rid] = true
    end
  end
end

local results, live_writes, run_writes, leases, unclaimed, scores, unscheduled, removed =
  {}, {}, {}, {}, {}, {}, {}, {}
local buffered_runs, waits = {}, {}
local k = 0 -- the runs of run_ids and run_keys met so far
for i, decision in ipairs(decisions) do
  local id, ver, nrt, fires = decision[1], decision[2], decision[3], decision[4]
  if owners[i] ~= owner or not lives[i] then
    results[i] = ''
  else
    local live = parse_live(lives[i])
    local running = NUMBER[live[RUNNING]] or tonumber(live[RUNNING])
    local max = NUMBER[live[MAX]] or tonumber(live[MAX])
    local status = {'-'}
    for j, fire in ipairs(fires) do
      k = k + 1
      local rid = run_ids[k]
      local admitted = existing[rid] and 'x' or admit(decision[5], running, max)
      if admitted == 'c' then
        run_writes[#run_writes + 1] = run_keys[k]
        run_writes[#run_writes + 1] = fire
        leases[#leases + 1] = lease_until
        leases[#leases + 1] = rid
      elseif admitted == 'b' then
        buffered_runs[#buffered_runs + 1] = run_keys[k]
        buffered_runs[#buffered_runs + 1] = pack_run('1', fire, '0', '')
        waits[#waits + 1] = buffered_until
        waits[#waits + 1] = rid
        redis.call('ZADD', buffered_key(id), 0, rid)
      end
      if admitted == 'c' or admitted == 'b' or adopted[rid] then
        existing[rid], adopted[rid] = true, nil
        running = running + 1
      end
      status[j + 1] = admitted
    end
    if #fires > 0 then
      live[RUNNING] = running
    end
    -- a user's change since the claim wins over the trigger's next fire time
    if live[VER] == ver then
      live[NRT] = nrt
    end
    unclaimed[#unclaimed + 1] = id
    if running == 0 and live[NRT] == '' and not string.find(live[FLAGS], 'q', 1, true) then
      removed[#removed + 1] = id
      status[1] = 'R'
    else
      live_writes[#live_writes + 1] = id
      live_writes[#live_writes + 1] = join_live(live)
      if schedulable(live) then
        scores[#scores + 1] = live[NRT]
        scores[#scores + 1] = id
      else
        unscheduled[#unscheduled + 1] = id
      end
    end
    results[i] = table.concat(status)
  end
end

-- the runs' records, now that their number (and so their fencing tokens) is known; '%d' formats
-- a token for half what '..' costs (sprintf of '%.14g')
local first_token = #run_writes > 0 and new_tokens(#run_writes / 2) or 0
for i = 2, #run_writes, 2 do
  run_writes[i] = pack_run('1', run_writes[i], string.format('%d', first_token + i / 2 - 1), owner)
end
call_keys('MSET', run_writes)
call_keys('MSET', buffered_runs)
call_many('ZADD', K_LEASES, leases)
call_many('ZADD', K_WAITING, waits)
call_many('HSET', K_TASKS, live_writes)
call_keys('DEL', keys_of(claim_key, unclaimed))
call_many('ZREM', K_CLAIMS, unclaimed)
call_many('ZADD', K_SCHEDULE, scores)
call_many('ZREM', K_SCHEDULE, unscheduled)
remove_tasks(removed)
if #scores > 0 then
  wake()
end
return {lease_until, table.concat(results, ','), first_token}
