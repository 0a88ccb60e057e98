-- ARGV: prefix, owner, a buffered run's not-before time (microseconds), count n, history on ('1')
-- or off (''), then n results in one argument, each
-- "failed|finished_at|retry_at|outcome|dead|token|run_id" followed by the byte 0xFF, which no
-- UTF-8 text holds (failed and dead '1'|'0'; retry_at '' = none; token the fencing token held;
-- one argument, not one per result: the client encodes each argument in Python), then one dead
-- letter JSON per result with dead '1', in order, then (history on) the three history arguments
-- of redis/history.py's completion_args (what entry each result has, the batch's documents, the
-- members of the entries the client spells). A 'deferred' outcome keeps the attempt and counts nothing. Returns the
-- run ids not completed: gone (completed by this holder's resent completion or by another's after
-- a takeover: the engine tells them apart) or held by another holder; not those waiting under
-- token (re-queued by this holder's completion, as a completion sent again finds them).
local owner, buffered_from, n, history_on = ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5]
local run_ids, results, letters = {}, {}, {}
-- each result matched where it starts in the argument (and the position after it captured), not
-- cut out first: a string made in Lua is hashed whole, about 11 instructions a byte; no field
-- but the last (a run id may hold '|') runs past the entry's end byte into the next entry
local packed_all, at = ARGV[6], 1
for i = 1, n do
  local result = {string.match(packed_all, '^([^|\255]*)|([^|\255]*)|([^|\255]*)|([^|\255]*)|([^|\255]*)|([^|\255]*)|([^\255]*)\255()', at)}
  at = result[8]
  if not at then
    error('backbeat: result ' .. i .. ' of a completion cannot be read')
  end
  results[#results + 1] = result
  run_ids[#run_ids + 1] = result[7]
end
if at <= #packed_all then
  error('backbeat: a completion holds more results than its count, ' .. n)
end
local next_letter = 7
for i, result in ipairs(results) do
  if result[5] == '1' then
    letters[i] = ARGV[next_letter]
    next_letter = next_letter + 1
  end
end
local stored = get_keys(keys_of(run_key, run_ids))

-- runs a removed task left (remove.lua) touch no task of their id: `counted` leaves them out
local any_detached = redis.call('EXISTS', K_DETACHED) == 1
local lost, finished, task_ids, counted, detached = {}, {}, {}, {}, {}
for i, rid in ipairs(run_ids) do
  local run = stored[i] and parse_run(stored[i])
  if run and holds(run, owner, results[i][6]) then
    finished[#finished + 1] = {rid, run, results[i], i}
    task_ids[#task_ids + 1] = task_of(rid, run[2])
    if any_detached and redis.call('SISMEMBER', K_DETACHED, rid) == 1 then
      detached[rid] = true
    else
      counted[#counted + 1] = task_ids[#task_ids]
    end
  elseif not run or run[3] ~= '' or run[4] ~= results[i][6] then
    lost[#lost + 1] = rid
  end
  -- else waiting under the token: re-queued by this holder's completion (a resend finds it so)
end

-- several runs of one task may finish in one batch: update a single copy of its live fields
local lives, order = {}, {}
for i, found in ipairs(get_many(K_TASKS, counted)) do
  if found and not lives[counted[i]] then
    lives[counted[i]] = parse_live(found)
    order[#order + 1] = counted[i]
  end
end

-- Every buffered run waits in K_WAITING from buffered_from on: when none does (tasks without an
-- overlap policy that buffers), no finished run has one to promote, and no task's buffered set
-- needs a look (one call per batch instead of one per run).
local any_buffered = redis.call('ZCOUNT', K_WAITING, buffered_from, '+inf') > 0
local done, retries, retry_runs, retry_ids, dead = {}, {}, {}, {}, {}
for i, item in ipairs(finished) do
  local rid, run, result = item[1], item[2], item[3]
  local failed, finished_at, retry_at, outcome = result[1], result[2], result[3], result[4]
  local deferred = outcome == 'deferred' and retry_at ~= ''
  if retry_at ~= '' then
    local attempt = tonumber(run[1])
    if not deferred then
      attempt = attempt + 1
    end
    retry_runs[#retry_runs + 1] = run_key(rid)
    retry_runs[#retry_runs + 1] = pack_run(attempt, run[2], run[4], '')
    retries[#retries + 1] = retry_at
    retries[#retries + 1] = rid
    retry_ids[#retry_ids + 1] = rid
  elseif detached[rid] then
    done[#done + 1] = rid
    redis.call('SREM', K_DETACHED, rid)
  else
    done[#done + 1] = rid
    -- a run gone for good: the earliest buffered run of its task (if any) may start
    local promoted = any_buffered and redis.call('ZPOPMIN', buffered_key(task_ids[i])) or {}
    if promoted[1] then
      retries[#retries + 1] = finished_at
      retries[#retries + 1] = promoted[1]
    end
  end
  if result[5] == '1' then
    dead[#dead + 1] = {rid, task_ids[i], letters[item[4]]}
  end
  -- a removed task's runs finish, but there is nothing left to count; a deferral counts nothing
  local live = not detached[rid] and lives[task_ids[i]]
  if live and not deferred then
    local running = NUMBER[live[RUNNING]] or tonumber(live[RUNNING])
    if retry_at == '' and running > 0 then
      live[RUNNING] = running - 1
    end
    live[RUNS] = (NUMBER[live[RUNS]] or tonumber(live[RUNS])) + 1
    if failed == '1' then
      live[FAILURES] = (NUMBER[live[FAILURES]] or tonumber(live[FAILURES])) + 1
    end
    live[LAST], live[OUTCOME] = finished_at, outcome
  end
end

-- a dead letter keeps the task as it is now (a one-shot task leaves the store below)
local letter_writes, snapshot_writes = {}, {}
for _, letter in ipairs(dead) do
  local rid, id = letter[1], letter[2]
  letter_writes[#letter_writes + 1], letter_writes[#letter_writes + 2] = rid, letter[3]
  local live = not detached[rid] and lives[id]
  if live then
    local packed = live_text(live)
    snapshot_writes[#snapshot_writes + 1] = rid
    snapshot_writes[#snapshot_writes + 1] = #packed .. ':' .. packed .. live[10]
  end
end
call_many('HSET', K_DEAD, letter_writes)
call_many('HSET', K_DEAD_TASKS, snapshot_writes)

-- tasks left with no run and no next fire time leave the store, unless claimed (one lookup)
local writes, removed, finished_ids = {}, {}, {}
for _, id in ipairs(order) do
  local live = lives[id]
  local running = NUMBER[live[RUNNING]] or tonumber(live[RUNNING])
  if running == 0 and live[NRT] == '' and not string.find(live[FLAGS], 'q', 1, true) then
    finished_ids[#finished_ids + 1] = id
  else
    writes[#writes + 1] = id
    writes[#writes + 1] = join_live(live)
  end
end
local claimed = get_keys(keys_of(claim_key, finished_ids))
for i, id in ipairs(finished_ids) do
  if claimed[i] then
    writes[#writes + 1] = id
    writes[#writes + 1] = join_live(lives[id])
  else
    removed[#removed + 1] = id
  end
end

call_keys('DEL', keys_of(run_key, done))
call_many('ZREM', K_LEASES, done)
call_keys('MSET', retry_runs)
call_many('ZREM', K_LEASES, retry_ids)
call_many('ZADD', K_WAITING, retries)
call_many('HSET', K_TASKS, writes)
remove_finished(removed, lives)
if #retries > 0 then
  wake()
end

-- The run history of the runs completed here (redis/history.py's completion_args): what each
-- result's entry is, the batch's documents (a first line of what they share, then a line per
-- entry, in the results' order), and the members of the '1' entries. The batch is one hash
-- (Keys.history_batch): the documents as they came (no document is cut out or put together
-- here), and its entries' members. Each entry is one member, "task id NUL end NUL entry id NUL
-- batch.line", of the per-task index history_by_task (scores 0, one task's entries a lexical
-- range); the end-time index history_at holds the batch once per window of ends it spans
-- (HISTORY_WINDOW_DIGITS), scored by its latest end there: a write per batch, not per entry. A 'p' (a
-- plain success, most entries) has its member spelled here from what the completion holds
-- (task id, end, run id and token); a '1' has it sent ("task id NUL end NUL entry id", each
-- part followed by a NUL). ('' for the kinds: every entry a 'p'.) A run not completed here
-- (lost, or waiting under its token) leaves its line unread in the batch. No look for the ids
-- first (history.lua's): an id spells the fencing token of the lease the run was completed
-- under, and a run is completed once under a token (a completion sent again finds it gone), so
-- an id is only ever written with the same entry.
local HISTORY_CHUNK = 200 -- items: a score and a member

local function record_history(kinds, docs, ones)
  -- an end's zeros in front, to 18 digits (a member's fixed width), by its length: made when a
  -- length is first seen (ends of one batch have one length or two; all 18 made each call cost
  -- about 30k instructions, as much as a few entries)
  local zeros = setmetatable({}, {__index = function(made, digits)
    made[digits] = string.rep('0', 18 - digits)
    return made[digits]
  end})
  -- where result i is in `finished` (and `task_ids`): i itself when every result was completed
  -- here (most batches), else none for those that were not (lost, or waiting under their token)
  local position
  if #finished < n then
    position = {}
    for j, item in ipairs(finished) do
      position[item[4]] = j
    end
  end
  local find, sub = string.find, string.sub
  if #finished == 0 or (kinds ~= '' and not find(kinds, '[p1]')) then
    return
  end
  local batch = redis.call('INCR', P .. 'history_batch_seq')
  local ref = '\0' .. batch .. '.'
  -- members: scores and members for ZADD (its first k items, filled again after each write: a
  -- new table grows by doubling, rehashing what it holds each time); listed: every member
  local members, listed, pos, k, line = {}, {}, 1, 0, 0
  local earliest, latest = '99999999999999999999', ''  -- past any end, before any
  local function index()
    for i = 1, n do
      local kind = kinds == '' and 'p' or sub(kinds, i, i)
      if kind ~= '0' then
        line = line + 1
        local j = i
        if position then
          j = position[i]
        end
        local member, ended
        if kind == 'p' then
          if j then
            local result = results[i]
            ended = result[2]
            -- an end of more than 18 digits, or before 1970 ('-'), fits no member
            if not find(ended, '^%d+$') or #ended > 18 then
              error('backbeat: history entry ' .. line .. ' of a completion ends at ' .. ended)
            end
            member = task_ids[j] .. '\0' .. zeros[#ended] .. ended .. '\0' .. result[7] .. '#1.' .. result[6]
              .. '#success' .. ref .. line
          end
        else
          local task_end = find(ones, '\0', pos, true)
          local id_end = find(ones, '\0', task_end + 20, true)
          if j then
            -- checked before the member is indexed: an end not of 18 digits (one before 1970
            -- spelled '-...') would stop every page and prune that reads its batch
            ended = string.match(sub(ones, task_end + 1, task_end + 19), '^0*(%d-%d)%z$')
            if not ended then
              error('backbeat: history entry ' .. line .. ' of a completion cannot be read')
            end
            member = sub(ones, pos, id_end - 1) .. ref .. line
          end
          pos = id_end + 1
        end
        if member then
          members[k + 1], members[k + 2] = '0', member
          k = k + 2
          listed[#listed + 1] = member
          -- the earliest and latest end (digits: the longer is the later): most batches lie in
          -- one window, found from them alone
          if #ended < #earliest or (#ended == #earliest and ended < earliest) then
            earliest = ended
          end
          if #ended > #latest or (#ended == #latest and ended > latest) then
            latest = ended
          end
        end
        if k == HISTORY_CHUNK then
          redis.call('ZADD', P .. 'history_by_task', unpack(members, 1, k))
          k = 0
        end
      end
    end
  end
  -- an entry that cannot be read (a '1' cut short, an end no member spells) stops the loop: the
  -- entries before it are indexed all the same, and their batch counts them (a batch that
  -- counted more would be kept for ever)
  local ok, err = pcall(index)
  if k > 0 then
    redis.call('ZADD', P .. 'history_by_task', unpack(members, 1, k))
  end
  if #listed > 0 then
    redis.call('HSET', P .. 'history_batch:' .. batch, 'd', docs, 'm', table.concat(listed, '\0'))
    redis.call('HSET', P .. 'history_live', batch, #listed)
    local window = history_window(latest)
    if earliest == latest or history_window(earliest) == window then
      redis.call('ZADD', P .. 'history_at', latest, batch .. '.' .. window)
    else
      call_many('ZADD', P .. 'history_at', history_spans(batch, listed))
    end
  end
  if not ok then
    error(err, 0)
  end
end

-- history is best effort: an argument that cannot be read costs the batch its entries, never
-- the completions above
if history_on ~= '' then
  local ok, err = pcall(record_history, ARGV[next_letter], ARGV[next_letter + 1], ARGV[next_letter + 2])
  if not ok then
    redis.log(redis.LOG_WARNING, 'backbeat: run history of a completion not recorded: ' .. tostring(err))
  end
end
return lost
