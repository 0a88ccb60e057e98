-- ARGV: prefix, a buffered run's score (model.overlap.BUFFERED_UNTIL), then either 'ids',
-- task_id... or 'tag', tag. Returns the ids removed.
-- Runs of removed tasks stay and finish (their completion then changes nothing), detached from
-- any task added again under the same id; buffered runs (waiting for a run of their task)
-- leave with their task.
local ids
if ARGV[3] == 'tag' then
  ids = redis.call('ZRANGE', tag_key(ARGV[4]), 0, -1)
else
  ids = args_from(4)
end
local records = get_many(K_TASKS, ids)
local removed, seen, running = {}, {}, {}
for i, id in ipairs(ids) do
  if records[i] and not seen[id] then
    seen[id] = true
    removed[#removed + 1] = id
    local live = parse_live(records[i])
    -- a quarantined record's count is unknown: taken as having runs in flight
    running[id] = string.find(live[FLAGS], 'q', 1, true) and math.huge or tonumber(live[RUNNING])
  end
end
remove_tasks(removed)
local in_flight, detach = {}, false
for _, id in ipairs(removed) do
  local buffered = redis.call('ZRANGE', buffered_key(id), 0, -1)
  call_keys('DEL', keys_of(run_key, buffered))
  call_many('ZREM', K_WAITING, buffered)
  redis.call('DEL', buffered_key(id))
  if running[id] > #buffered then
    in_flight[id], detach = true, true
  end
end
-- runs have no index by task: the leased ones and the waiting ones that are not buffered (a
-- buffered run belongs to a task that still has one going) are read only when a removed task
-- had runs besides its buffered ones
if detach then
  local of_removed = {}
  local leased = redis.call('ZRANGE', K_LEASES, 0, -1)
  local waiting = redis.call('ZRANGEBYSCORE', K_WAITING, '-inf', '(' .. ARGV[2])
  for _, rids in ipairs({leased, waiting}) do
    for _, rid in ipairs(rids) do
      if in_flight[task_of(rid)] then
        of_removed[#of_removed + 1] = rid
      end
    end
  end
  call_many('SADD', K_DETACHED, of_removed)
end
if #removed > 0 then
  wake()
end
return removed
