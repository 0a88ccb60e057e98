-- ARGV: prefix, replace ('1'|'0', or 'r': '0' sent again after its reply was lost), then one argument per task:
-- "<id size>|<tags size>|<id><tags><record>" (tags a JSON list or empty; the record as stored, its
-- live fields at their defaults empty, as join_live writes them: a new task's is written as sent).
-- Returns the ids that exist already if replace is '0' (then nothing was written), else nothing.

-- One new untagged task (a lone awaited add, the most common call) takes a path of its own, before
-- the shared helpers below: each of their definitions is a closure made again on every call (about
-- 35,000 server instructions), which this path does without. Anything else (an id stored already,
-- tags, a batch, a record that is not one, a write refused) falls through to the general path,
-- nothing written.
-- The ids of the one that fills K_RECENT are merged into the index's buckets there too (`pushed`).
local pushed
do
  local prefix, arg = ARGV[1], ARGV[3]
  local id_size, at = string.match(arg or '', '^(%d+)|0|()')
  local id = id_size and #ARGV == 3 and string.sub(arg, at, at + id_size - 1)
  local record = id and string.sub(arg, at + id_size)
  -- the first two of a record's live fields: NRT and FLAGS
  local nrt, flags = string.match(record or '', '^([^|]*)|[^|]*|[^|]*|[^|]*|[^|]*|[^|]*|[^|]*|([^|]*)|')
  -- HSETNX writes the record only if the id is not stored: its check and its write in one call.
  -- Through pcall: on a server out of memory (maxmemory under noeviction) a script's first write
  -- fails even where the id is stored and nothing would be written; the general path's reads
  -- then tell a taken id (or a resend's own earlier write) from a new one.
  if nrt and redis.pcall('HSETNX', prefix .. 'tasks', id, record) == 1 then
    local due = nrt ~= '' and flags == ''
    -- workers sleep until the schedule's earliest task at most: woken if this one comes first
    local wanted = due and redis.call('ZCOUNT', prefix .. 'schedule', '-inf', nrt) == 0
    pushed = redis.call('RPUSH', prefix .. 'recent', id)
    if due then
      redis.call('ZADD', prefix .. 'schedule', nrt, id)
    elseif string.find(flags, 'o', 1, true) then
      redis.call('ZADD', prefix .. 'orphaned', 0, id)
    end
    if wanted then
      redis.call('PUBLISH', prefix .. 'wakeup', '1')
    end
    -- _lib.lua's RECENT, or more: merge_recent below checks it
    if pushed < 100 then
      return {}
    end
  end
end
--[[ the shared helpers ]]
if pushed then
  if pushed >= RECENT then
    merge_recent({})
  end
  return {}
end
local replace = ARGV[2] == '1'
local ids, all_tags, records_in = {}, {}, {}
for i = 3, #ARGV do
  local arg = ARGV[i]
  local id_size, tags_size, at = string.match(arg, '^(%d+)|(%d+)|()')
  local id_end = at + id_size
  local tags_end = id_end + tags_size
  ids[i - 2] = string.sub(arg, at, id_end - 1)
  all_tags[i - 2] = string.sub(arg, id_end, tags_end - 1)
  records_in[i - 2] = string.sub(arg, tags_end)
end
local old_lives = get_many(K_TASKS, ids)
local existing = {}
for i, id in ipairs(ids) do
  if old_lives[i] then
    existing[#existing + 1] = id
  end
end
if #existing > 0 and not replace then
  if ARGV[2] == 'r' then
    -- The first sending ran if every id holds the very document it sent (a record's created_at
    -- is in µs): it wrote the whole batch, atomically. One id holding its document proves
    -- nothing (the same task may have been added before, and this batch never arrived).
    local ours = #existing == #ids
    for i = 1, #ids do
      ours = ours and select(2, split_record(old_lives[i])) == select(2, split_record(records_in[i]))
    end
    if ours then
      return {}
    end
  end
  return existing
end

local old_tags, owners = {}, {}
if #existing > 0 then
  old_tags = get_many(K_TAGS, ids)
  owners = get_keys(keys_of(claim_key, ids))
end
-- the first two of a record's live fields: NRT and FLAGS
local NRT_FLAGS = '^([^|]*)|[^|]*|[^|]*|[^|]*|[^|]*|[^|]*|[^|]*|([^|]*)|'
local records, index, due, not_due, tag_writes, untagged, by_tag = {}, {}, {}, {}, {}, {}, {}
-- the earliest new time (as sent, and as a number), for the wake-up check below
local earliest, earliest_at
for i, id in ipairs(ids) do
  local tags = all_tags[i]
  local record, nrt, flags = records_in[i], nil, nil
  if old_lives[i] then
    -- A replacement keeps the live state (running, counters, a claim) and counts as a change;
    -- a field that is not a number (a quarantined record being repaired) starts again from its
    -- default, or no script could ever read the record again
    local live, old = parse_live(record), parse_live(old_lives[i])
    for _, tag in ipairs(decode_tags(old_tags[i])) do
      redis.call('ZREM', tag_key(tag), id)
    end
    live[VER] = math.max((tonumber(old[VER]) or 0) + 1, tonumber(live[VER]))
    for _, f in ipairs({RUNNING, RUNS, FAILURES, LAST}) do
      if old[f] ~= '' and not tonumber(old[f]) then
        old[f] = DEFAULTS[f]
      end
    end
    live[RUNNING], live[RUNS], live[FAILURES] = old[RUNNING], old[RUNS], old[FAILURES]
    live[LAST], live[OUTCOME] = old[LAST], old[OUTCOME]
    record, nrt, flags = join_live(live), live[NRT], live[FLAGS]
    index_orphaned(id, flags)
  else
    index[#index + 1] = id
    nrt, flags = string.match(record, NRT_FLAGS)
    if string.find(flags, 'o', 1, true) then
      index_orphaned(id, flags)
    end
  end
  records[#records + 1], records[#records + 2] = id, record
  -- a claimed task keeps its claim (scored by the claim's end) until fire() drops it
  if not owners[i] then
    if nrt ~= '' and flags == '' then
      due[#due + 1], due[#due + 2] = nrt, id
      local at = tonumber(nrt)
      if not earliest_at or at < earliest_at then
        earliest, earliest_at = nrt, at
      end
    else
      not_due[#not_due + 1] = id
    end
  end
  if tags == '' then
    untagged[#untagged + 1] = id
  else
    tag_writes[#tag_writes + 1], tag_writes[#tag_writes + 2] = id, tags
    for _, tag in ipairs(decode_tags(tags)) do
      by_tag[tag] = by_tag[tag] or {}
      table.insert(by_tag[tag], '0')
      table.insert(by_tag[tag], id)
    end
  end
end

-- Workers sleep until the schedule's earliest task (or a claim's end) at most: wake them only if
-- a new task comes before it.
-- ZCOUNT up to the earliest new time, as text: a score read back would be formatted by the server
-- and parsed by Lua (the most of this check's cost), a Lua number sent would keep 14 digits.
local wanted = #existing > 0
if not wanted and earliest then
  wanted = redis.call('ZCOUNT', K_SCHEDULE, '-inf', earliest) == 0
end
call_many('HSET', K_TASKS, records)
index_new(index)
call_many('ZADD', K_SCHEDULE, due)
call_many('HSET', K_TAGS, tag_writes)
for tag, members in pairs(by_tag) do
  call_many('ZADD', tag_key(tag), members)
end
if #existing > 0 then
  call_many('ZREM', K_SCHEDULE, not_due)
  call_many('HDEL', K_TAGS, untagged)
  call_many('HDEL', K_QUARANTINE, existing)
end
if wanted then
  wake()
end
if replace then
  return {}
end
return existing
