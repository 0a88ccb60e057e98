-- ARGV: prefix, replace ('1'|'0', or 'r': '0' sent again after its reply was lost), then one argument per task:
-- "<live fields>|<id size>|<tags size>|<id><tags><doc>" (live fields as in _lib.lua, the
-- outcome without '|', a default one empty or not; tags a JSON list or empty). Returns the ids that exist already if
-- replace is '0' (then nothing was written), else nothing.
local replace = ARGV[2] == '1'
local ids, new_lives, all_tags, docs_in = {}, {}, {}, {}
-- written out: building it (string.rep and two concatenations) cost 3,600 instructions a call
local pattern = '^([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|(%d+)|(%d+)|()'
for i = 3, #ARGV do
  local arg = ARGV[i]
  local live = {string.match(arg, pattern)}
  local id_end = live[12] + live[10]
  local tags_end = id_end + live[11]
  ids[#ids + 1] = string.sub(arg, live[12], id_end - 1)
  all_tags[#all_tags + 1] = string.sub(arg, id_end, tags_end - 1)
  docs_in[#docs_in + 1] = string.sub(arg, tags_end)
  live[10], live[11], live[12] = nil, nil, nil
  for j = 1, 9 do
    if live[j] == '' then
      live[j] = DEFAULTS[j]
    end
  end
  new_lives[#new_lives + 1] = live
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
      ours = ours and select(2, split_record(old_lives[i])) == docs_in[i]
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
local records, index, due, not_due, tag_writes, untagged, by_tag = {}, {}, {}, {}, {}, {}, {}
for i, id in ipairs(ids) do
  local tags = all_tags[i]
  local live = new_lives[i]
  if old_lives[i] then
    -- A replacement keeps the live state (running, counters, a claim) and counts as a change;
    -- a field that is not a number (a quarantined record being repaired) starts again from its
    -- default, or no script could ever read the record again
    local old = parse_live(old_lives[i])
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
  else
    index[#index + 1] = id
  end
  if old_lives[i] or string.find(live[FLAGS], 'o', 1, true) then
    index_orphaned(id, live[FLAGS])
  end
  live[10] = docs_in[i]
  records[#records + 1], records[#records + 2] = id, join_live(live)
  -- a claimed task keeps its claim (scored by the claim's end) until fire() drops it
  if not owners[i] then
    if schedulable(live) then
      due[#due + 1], due[#due + 2] = live[NRT], id
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
      table.insert(by_tag[tag], 0)
      table.insert(by_tag[tag], id)
    end
  end
end

-- Workers sleep until the schedule's earliest task (or a claim's end) at most: wake them only if
-- a new task comes before it.
-- ZCOUNT up to the earliest new time, as text: a score read back would be formatted by the server
-- and parsed by Lua (the most of this check's cost), a Lua number sent would keep 14 digits.
local wanted = #existing > 0
if not wanted and #due > 0 then
  local earliest = 1
  for i = 3, #due, 2 do
    if tonumber(due[i]) < tonumber(due[earliest]) then
      earliest = i
    end
  end
  wanted = redis.call('ZCOUNT', K_SCHEDULE, '-inf', due[earliest]) == 0
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
