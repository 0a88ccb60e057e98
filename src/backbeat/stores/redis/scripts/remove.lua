-- ARGV: prefix, then either 'ids', task_id... or 'tag', tag. Returns the ids removed.
-- Runs of removed tasks stay and finish (their completion then changes nothing); buffered
-- runs (waiting for a run of their task) leave with their task.
local ids
if ARGV[2] == 'tag' then
  ids = redis.call('ZRANGE', tag_key(ARGV[3]), 0, -1)
else
  ids = args_from(3)
end
local records = get_many(K_TASKS, ids)
local removed, seen = {}, {}
for i, id in ipairs(ids) do
  if records[i] and not seen[id] then
    seen[id] = true
    removed[#removed + 1] = id
  end
end
remove_tasks(removed)
for _, id in ipairs(removed) do
  local buffered = redis.call('ZRANGE', buffered_key(id), 0, -1)
  call_keys('DEL', keys_of(run_key, buffered))
  call_many('ZREM', K_WAITING, buffered)
  redis.call('DEL', buffered_key(id))
end
if #removed > 0 then
  wake()
end
return removed
