-- ARGV: prefix, docs, members. Records history entries (redis/history.py's pack): docs is the
-- batch's documents as they are kept (a first line of what they share, then a line per entry),
-- members each entry's "task id NUL end NUL entry id NUL" (the end 18 digits), in the lines'
-- order. Two arguments for any number of entries, no JSON decoded here. An entry recorded
-- already (a member of its task, end and id in history_by_task, of this key layout or an older
-- one) is left as it was, its line unread. The entries recorded make a batch as a completion's
-- do (complete.lua): each one member "task id NUL end NUL entry id NUL batch.line" of
-- history_by_task, the batch a hash of the documents and the members, and in history_at once
-- per window of ends.
local K_BY_TASK = P .. 'history_by_task'
local docs, packed, at = ARGV[2], ARGV[3], 1
local find, sub = string.find, string.sub
local fresh, seen, line = {}, {}, 0
while at <= #packed do
  local task_end = find(packed, '\0', at, true)
  local id_end = task_end and find(packed, '\0', task_end + 20, true)
  if not id_end or not find(sub(packed, task_end + 1, task_end + 19), '^%d+%z$') then
    error('backbeat: history entry ' .. (line + 1) .. ' of a batch cannot be read')
  end
  line = line + 1
  local member = sub(packed, at, id_end - 1)
  if not seen[member] then
    seen[member] = true
    if #redis.call('ZRANGEBYLEX', K_BY_TASK, '[' .. member, '(' .. member .. '\1', 'LIMIT', 0, 1) == 0 then
      fresh[#fresh + 1], fresh[#fresh + 2] = member, line
    end
  end
  at = id_end + 1
end
if #fresh == 0 then
  return 0
end
local batch = redis.call('INCR', P .. 'history_batch_seq')
redis.call('HSET', P .. 'history_live', batch, #fresh / 2)
local by_task, listed = {}, {}
for i = 1, #fresh, 2 do
  local member = fresh[i] .. '\0' .. batch .. '.' .. fresh[i + 1]
  by_task[#by_task + 1], by_task[#by_task + 2] = 0, member
  listed[#listed + 1] = member
end
call_many('ZADD', K_BY_TASK, by_task)
redis.call('HSET', P .. 'history_batch:' .. batch, 'd', docs, 'm', table.concat(listed, '\0'))
call_many('ZADD', P .. 'history_at', history_spans(batch, listed))
return #listed
