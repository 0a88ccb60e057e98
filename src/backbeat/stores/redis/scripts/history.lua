-- ARGV: prefix, then per entry: id, task id, end (epoch microseconds), JSON document.
-- Records history entries; an id recorded already is left as it was.
local tasks = {}
for i = 2, #ARGV, 4 do
  local id, task_id, score = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  if redis.call('HSETNX', P .. 'history_docs', id, ARGV[i + 3]) == 1 then
    redis.call('ZADD', P .. 'history', score, id)
    redis.call('ZADD', P .. 'history:' .. task_id, score, id)
    tasks[task_id] = true
  end
end
for task_id in pairs(tasks) do
  redis.call('SADD', P .. 'history_tasks', task_id)
end
return 0
