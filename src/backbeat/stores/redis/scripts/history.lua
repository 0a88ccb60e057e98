-- ARGV: prefix, sizes, parts. Entry i is four numbers of sizes (a comma-separated list): the
-- lengths of its id and task id, its end (epoch microseconds) and the length of its JSON
-- document; parts holds id, task id and document of every entry, back to back. Two arguments
-- for any number of entries, read with string.sub: no JSON to decode here, no escaping of the
-- documents by the client. Records history entries; an id recorded already is left as it was.
local sizes, parts, at = ARGV[2], ARGV[3], 1
local numbers = {}
for number in string.gmatch(sizes, '%d+') do
  numbers[#numbers + 1] = number
end
local tasks = {}
for i = 1, #numbers, 4 do
  local id_end = at + tonumber(numbers[i])
  local task_end = id_end + tonumber(numbers[i + 1])
  local doc_end = task_end + tonumber(numbers[i + 3])
  local id, task_id, score = string.sub(parts, at, id_end - 1), string.sub(parts, id_end, task_end - 1), numbers[i + 2]
  if redis.call('HSETNX', P .. 'history_docs', id, string.sub(parts, task_end, doc_end - 1)) == 1 then
    redis.call('ZADD', P .. 'history', score, id)
    redis.call('ZADD', P .. 'history:' .. task_id, score, id)
    tasks[task_id] = true
  end
  at = doc_end
end
for task_id in pairs(tasks) do
  redis.call('SADD', P .. 'history_tasks', task_id)
end
return 0
