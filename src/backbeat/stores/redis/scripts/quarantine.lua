-- ARGV: prefix, then pairs of task_id, error. Keeps the record; takes it out of claims.
-- Returns how many of the tasks were stored.
local found = 0
for i = 2, #ARGV, 2 do
  local id = ARGV[i]
  local raw = redis.call('HGET', K_TASKS, id)
  if raw then
    found = found + 1
    local live = parse_live(raw)
    if not string.find(live[FLAGS], 'q', 1, true) then
      live[FLAGS] = live[FLAGS] .. 'q'
      redis.call('HSET', K_TASKS, id, join_live(live))
    end
    redis.call('HSET', K_QUARANTINE, id, ARGV[i + 1])
    redis.call('DEL', claim_key(id))
    redis.call('ZREM', K_SCHEDULE, id)
    redis.call('ZREM', K_CLAIMS, id)
  end
end
return found
