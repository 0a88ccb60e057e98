-- Key layout 3 -> 4, one batch a call (a migration cut short resumes where it stopped). ARGV:
-- prefix, n: the history of up to n tasks of P .. 'history_tasks' moves from the task's own
-- sorted set (P .. 'history:' .. task id, entry id -> end) into the per-task index
-- (P .. 'history_by_task', members "task id \0 end, 18 digits \0 entry id"); returns how many
-- tasks are left to move.
local K_HISTORY_TASKS, K_BY_TASK = P .. 'history_tasks', P .. 'history_by_task'
for _, task_id in ipairs(redis.call('SRANDMEMBER', K_HISTORY_TASKS, tonumber(ARGV[2]))) do
  local key = P .. 'history:' .. task_id
  local stored = redis.call('ZRANGE', key, 0, -1, 'WITHSCORES')
  local members = {}
  for i = 1, #stored, 2 do
    local score = us_text(tonumber(stored[i + 1]))
    members[#members + 1] = 0
    members[#members + 1] = task_id .. '\0' .. string.rep('0', 18 - #score) .. score .. '\0' .. stored[i]
  end
  call_many('ZADD', K_BY_TASK, members)
  redis.call('DEL', key)
  redis.call('SREM', K_HISTORY_TASKS, task_id)
end
return redis.call('SCARD', K_HISTORY_TASKS)
