-- Key layout 2 -> 3, one batch a call (a migration cut short resumes where it stopped). ARGV:
-- prefix, then 'merge', task_id...: each task's live fields (P .. 'live') become the head of
-- its record; 'index', n: n ids of the old id sorted set (P .. 'ids') move into the id index,
-- returns how many are left there; 'claims', offset, n: the claimed tasks among n members of
-- the schedule from offset move to the claims index; 'runs', offset, n: the waiting runs among
-- n members of the leases from offset move to their own index. Both return the offset to go on
-- from (-1 at the end).
local K_OLD_LIVE, K_OLD_IDS = P .. 'live', P .. 'ids'
local OLD_LIVE = '^([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|(.*)$'
local mode = ARGV[2]
if mode == 'merge' then
  local ids = args_from(3)
  local lives, docs = get_many(K_OLD_LIVE, ids), get_many(K_TASKS, ids)
  local records = {}
  for i, id in ipairs(ids) do
    local f = lives[i] and {string.match(lives[i], OLD_LIVE)}
    if f and #f == 9 then
      f[10] = docs[i] or ''
      records[#records + 1], records[#records + 2] = id, join_live(f)
    end
  end
  call_many('HSET', K_TASKS, records)
  call_many('HDEL', K_OLD_LIVE, ids)
  return 0
elseif mode == 'index' then
  local ids = redis.call('ZRANGE', K_OLD_IDS, 0, tonumber(ARGV[3]) - 1)
  index_add(ids)
  call_many('ZREM', K_OLD_IDS, ids)
  return redis.call('ZCARD', K_OLD_IDS)
end
local offset, n = tonumber(ARGV[3]), tonumber(ARGV[4])
local from, to, make, moves = K_SCHEDULE, K_CLAIMS, claim_key, function(found)
  return found ~= false
end
if mode == 'runs' then
  from, to, make, moves = K_LEASES, K_WAITING, run_key, function(found)
    return found ~= false and parse_run(found)[3] == ''
  end
end
local batch = redis.call('ZRANGE', from, offset, offset + n - 1, 'WITHSCORES')
if #batch == 0 then
  return -1
end
local ids = {}
for i = 1, #batch, 2 do
  ids[#ids + 1] = batch[i]
end
local scores, moved = {}, {}
for i, found in ipairs(get_keys(keys_of(make, ids))) do
  if moves(found) then
    scores[#scores + 1], scores[#scores + 2] = batch[2 * i], ids[i]
    moved[#moved + 1] = ids[i]
  end
end
call_many('ZADD', to, scores)
call_many('ZREM', from, moved)
return offset + #ids - #moved
