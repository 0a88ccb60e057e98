-- ARGV: prefix, then a JSON array of entries, each [id, task id, end (epoch microseconds as
-- text), JSON document as a string]: one argument, which the client packs far faster than four
-- per entry. Records history entries; an id recorded already is left as it was.
local tasks = {}
for _, entry in ipairs(cjson.decode(ARGV[2])) do
  local id, task_id, score = entry[1], entry[2], entry[3]
  if redis.call('HSETNX', P .. 'history_docs', id, entry[4]) == 1 then
    redis.call('ZADD', P .. 'history', score, id)
    redis.call('ZADD', P .. 'history:' .. task_id, score, id)
    tasks[task_id] = true
  end
end
for task_id in pairs(tasks) do
  redis.call('SADD', P .. 'history_tasks', task_id)
end
return 0
