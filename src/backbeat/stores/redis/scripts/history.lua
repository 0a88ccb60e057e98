-- ARGV: prefix, docs, members. Records history entries (redis/history.py's pack): docs is the
-- batch's documents as it is kept (Keys.history_batch: a first line of what they share, then a
-- line per entry), members each entry's "task id NUL end NUL entry id NUL" (the end 18 digits),
-- in the lines' order. Two arguments for any number of entries, no JSON decoded here. An entry
-- recorded already (a member of its task, end and id in history_by_task, of this key layout or
-- an older one) is left as it was, its line unread. Each entry recorded gets the member
-- "task id NUL end NUL entry id NUL batch.line" in history_by_task and history_at.
local K_BY_TASK = P .. 'history_by_task'
local docs, packed, at = ARGV[2], ARGV[3], 1
local find, sub = string.find, string.sub
local fresh, ends, seen, line = {}, {}, {}, 0
while at <= #packed do
  local task_end = find(packed, '\0', at, true)
  local id_end = task_end and find(packed, '\0', task_end + 20, true)
  if not id_end or sub(packed, task_end + 19, task_end + 19) ~= '\0' then
    error('backbeat: history entry ' .. (line + 1) .. ' of a batch cannot be read')
  end
  line = line + 1
  local member = sub(packed, at, id_end - 1)
  if not seen[member] then
    seen[member] = true
    if #redis.call('ZRANGEBYLEX', K_BY_TASK, '[' .. member, '(' .. member .. '\1', 'LIMIT', 0, 1) == 0 then
      fresh[#fresh + 1], fresh[#fresh + 2] = member, line
      ends[#ends + 1] = sub(packed, task_end + 1, task_end + 18)
    end
  end
  at = id_end + 1
end
if #fresh == 0 then
  return 0
end
local batch = redis.call('INCR', P .. 'history_batch_seq')
redis.call('SET', P .. 'history_batch:' .. batch, docs)
redis.call('HSET', P .. 'history_live', batch, #ends)
local by_end, by_task = {}, {}
for i = 1, #fresh, 2 do
  local member = fresh[i] .. '\0' .. batch .. '.' .. fresh[i + 1]
  by_end[#by_end + 1], by_end[#by_end + 2] = ends[(i + 1) / 2], member
  by_task[#by_task + 1], by_task[#by_task + 2] = 0, member
end
call_many('ZADD', P .. 'history_at', by_end)
call_many('ZADD', K_BY_TASK, by_task)
return #ends
