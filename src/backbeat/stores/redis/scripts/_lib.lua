-- Shared by every script (prepended at load time). ARGV[1] is the key prefix "{name}:";
-- every key starts with it, so all keys share one hash tag (one Redis Cluster slot).
--
-- Every script reads and writes a whole batch with a handful of variadic commands (one
-- redis.call costs more than the Lua work on an item): tasks are fields of a few big hashes;
-- claims and runs, of which there are few at a time, are string keys (MGET/MSET/DEL), since
-- a small hash is a listpack that HMGET scans once per field. A task's live fields are:
--   "nrt|ver|running|runs|failures|last_run|max_instances|flags|last_outcome"
-- (flags: p paused, o orphaned, q quarantined; the last field may hold any text) and a
-- run is "attempt|fire_time|fencing_token|owner"
-- (owner '' while waiting; its task id is the run id without '@' .. fire_time).
-- Times are epoch microseconds as decimal strings: exact in a double, and never passed
-- through Lua's tostring, which keeps only 14 digits.
local P = ARGV[1]
local K_TASKS = P .. 'tasks'
local K_LIVE = P .. 'live'
local K_IDS = P .. 'ids'
local K_TAGS = P .. 'tags'
-- unclaimed schedulable tasks scored by next run time, claimed ones by claim end
local K_SCHEDULE = P .. 'schedule'
local K_LEASES = P .. 'leases'
local K_QUARANTINE = P .. 'quarantine'
local K_DEAD = P .. 'dead'
-- ids of orphaned tasks (flag 'o'), scores 0: listing them reads no other task
local K_ORPHANED = P .. 'orphaned'
local K_DEAD_TASKS = P .. 'dead_tasks'
local K_STATE = P .. 'state'
local K_WAKEUP = P .. 'wakeup'
-- the last fencing token handed out: only ever incremented (clear keeps it)
local K_FENCING = P .. 'fencing'
local NRT, VER, RUNNING, RUNS, FAILURES, LAST, MAX, FLAGS, OUTCOME = 1, 2, 3, 4, 5, 6, 7, 8, 9
local CHUNK = 2000 -- arguments per variadic call: unpack() is bounded by the Lua C stack

-- The server's clock in epoch microseconds: leases are judged by it, never by a client's.
-- TIME is not deterministic, so a script that calls it and then writes relies on script
-- effects replication (the default since Redis 5, the only mode since Redis 7).
local function server_now()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

-- An integer time as exact decimal text (tostring would keep 14 digits only).
local function us_text(n)
  return string.format('%.0f', n)
end

local function tag_key(tag)
  return P .. 'tag:' .. tag
end

-- the owner of a task's claim
local function claim_key(id)
  return P .. 'c:' .. id
end

-- a run: "attempt|fire_time|fencing_token|owner"
local function run_key(id)
  return P .. 'r:' .. id
end

-- a task's buffered runs (overlap policies): a sorted set of run ids, all scored 0, so its
-- order is the ids' and so their fire times' (every id of a task has the same prefix)
local function buffered_key(id)
  return P .. 'b:' .. id
end

-- the task id of a run id ("task_id@fire_time"; a fire time holds no '@')
local function task_of(run_id)
  return string.match(run_id, '^(.*)@[^@]*$')
end

-- What fire does with a fire time of a task with `running` runs (model.overlap.admit):
-- 'c' create a leased run, 'b' a buffered one, 's' skip. `buffers` < 0 means allow_all
-- (up to max runs at once), else one run at a time with up to `buffers` buffered behind it.
local function admit(buffers, running, max)
  if buffers < 0 then
    if running < max then
      return 'c'
    end
    return 's'
  end
  if running == 0 then
    return 'c'
  end
  if running - 1 < buffers then
    return 'b'
  end
  return 's'
end

local function keys_of(make, ids)
  local keys = {}
  for i, id in ipairs(ids) do
    keys[i] = make(id)
  end
  return keys
end

-- One variadic command (ZADD key score member ..., HDEL key field ...) over many items.
local function call_many(command, key, items)
  for i = 1, #items, CHUNK do
    redis.call(command, key, unpack(items, i, math.min(i + CHUNK - 1, #items)))
  end
end

-- ARGV from index first on, as a table (unpack() could overflow the Lua C stack).
local function args_from(first)
  local items = {}
  for i = first, #ARGV do
    items[#items + 1] = ARGV[i]
  end
  return items
end

-- A variadic command over keys only (MGET, MSET, DEL) for many items.
local function call_keys(command, items)
  local replies = {}
  for i = 1, #items, CHUNK do
    local part = redis.call(command, unpack(items, i, math.min(i + CHUNK - 1, #items)))
    if type(part) == 'table' then
      for j = 1, #part do
        replies[i + j - 1] = part[j]
      end
    end
  end
  return replies
end

-- Values of string keys (false where missing).
local function get_keys(keys)
  return call_keys('MGET', keys)
end

-- HMGET over many fields; missing ones are false.
local function get_many(key, fields)
  local values = {}
  for i = 1, #fields, CHUNK do
    local part = redis.call('HMGET', key, unpack(fields, i, math.min(i + CHUNK - 1, #fields)))
    for j = 1, #part do
      values[i + j - 1] = part[j]
    end
  end
  return values
end

-- string.match does in one C call what a find/sub loop does in eighteen
local LIVE_PATTERN = '^([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|(.*)$'

local function parse_live(raw)
  return {string.match(raw, LIVE_PATTERN)}
end

local function join_live(f)
  return f[1] .. '|' .. f[2] .. '|' .. f[3] .. '|' .. f[4] .. '|' .. f[5] .. '|' .. f[6] .. '|' .. f[7]
    .. '|' .. f[8] .. '|' .. f[9]
end

-- {attempt, fire_time, owner, fencing_token}
local function parse_run(raw)
  local attempt, fire, token, owner = string.match(raw, '^([^|]*)|([^|]*)|(%d*)|(.*)$')
  if attempt then
    return {attempt, fire, owner, token}
  end
  -- written before fencing tokens: "attempt|fire_time|owner"
  local old = {string.match(raw, '^([^|]*)|([^|]*)|(.*)$')}
  old[4] = '0'
  return old
end

local function pack_run(attempt, fire, token, owner)
  return attempt .. '|' .. fire .. '|' .. token .. '|' .. owner
end

-- n new fencing tokens: the first of them (the others follow it, one apart)
local function new_tokens(n)
  return redis.call('INCRBY', K_FENCING, n) - n + 1
end

-- Whether run (parsed) is held by owner under token (text, as the client sent it).
local function holds(run, owner, token)
  return run[3] == owner and run[4] == token
end

local function run_task(run_id, fire)
  return string.sub(run_id, 1, #run_id - #fire - 1)
end

local function schedulable(live)
  return live[NRT] ~= '' and live[FLAGS] == ''
end

local function decode_tags(raw)
  if not raw or raw == '' then
    return {}
  end
  local ok, tags = pcall(cjson.decode, raw)
  if ok and type(tags) == 'table' then
    return tags
  end
  return {}
end

-- Schedule an unclaimed task at its next run time iff it has one and nothing keeps it out.
local function reschedule(id, live)
  if redis.call('EXISTS', claim_key(id)) == 1 then
    return
  end
  if schedulable(live) then
    redis.call('ZADD', K_SCHEDULE, live[NRT], id)
  else
    redis.call('ZREM', K_SCHEDULE, id)
  end
end

local function remove_tasks(ids)
  if #ids == 0 then
    return
  end
  local tags = get_many(K_TAGS, ids)
  for i, id in ipairs(ids) do
    for _, tag in ipairs(decode_tags(tags[i])) do
      redis.call('ZREM', tag_key(tag), id)
    end
  end
  for _, key in ipairs({K_TASKS, K_LIVE, K_TAGS, K_QUARANTINE}) do
    call_many('HDEL', key, ids)
  end
  call_keys('DEL', keys_of(claim_key, ids))
  call_many('ZREM', K_IDS, ids)
  call_many('ZREM', K_SCHEDULE, ids)
  call_many('ZREM', K_ORPHANED, ids)
end

-- Keep the orphaned index in step with a task's flags.
local function index_orphaned(id, flags)
  if string.find(flags, 'o', 1, true) then
    redis.call('ZADD', K_ORPHANED, 0, id)
  else
    redis.call('ZREM', K_ORPHANED, id)
  end
end

-- Tasks as two reply elements (the client pays per element, not per byte): the sizes of
-- their parts, "id,live,doc,id,live,doc,...", and the parts concatenated. doc is -1 for a
-- task that is gone (no live fields either) or quarantined.
local function snapshots(ids, lives)
  local docs = get_many(K_TASKS, ids)
  local quarantined = get_many(K_QUARANTINE, ids)
  local sizes, parts = {}, {}
  for i, id in ipairs(ids) do
    local live = lives[i] or ''
    local doc = lives[i] and not quarantined[i] and docs[i]
    parts[#parts + 1] = id
    parts[#parts + 1] = live
    sizes[#sizes + 1] = #id
    sizes[#sizes + 1] = #live
    if doc then
      parts[#parts + 1] = doc
      sizes[#sizes + 1] = #doc
    else
      sizes[#sizes + 1] = -1
    end
  end
  return {table.concat(sizes, ','), table.concat(parts)}
end

local function wake()
  redis.call('PUBLISH', K_WAKEUP, '1')
end

-- Add a waiting run ``rid`` of task ``id`` for ``fire``, claimable at ``now``. Returns 'ok',
-- 'missing' (no such task, or quarantined), 'exists' (that run exists) or 'full' (max_instances).
local function add_waiting_run(id, rid, fire, now)
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
  redis.call('SET', run_key(rid), pack_run('1', fire, '0', ''))
  redis.call('ZADD', K_LEASES, now, rid)
  live[RUNNING] = tonumber(live[RUNNING]) + 1
  redis.call('HSET', K_LIVE, id, join_live(live))
  wake()
  return 'ok'
end
