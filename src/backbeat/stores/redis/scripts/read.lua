-- ARGV: prefix, then either 'ids', task_id... or 'scan', index ('ids': the id index, else the key
-- suffix of a sorted set of ids, scores 0), after (lex), count.
-- Returns {tasks, more}: the tasks flat (see snapshots in _lib.lua); more is 1 when the
-- index holds ids after the last one returned.
local ids
local more = 0
if ARGV[2] == 'scan' then
  local start = '-'
  if ARGV[4] ~= '' then
    start = '(' .. ARGV[4]
  end
  local count = tonumber(ARGV[5])
  if ARGV[3] == 'ids' then
    local following
    ids, following = index_page(ARGV[4], count)
    if following then
      more = 1
    end
  else
    ids = redis.call('ZRANGEBYLEX', P .. ARGV[3], start, '+', 'LIMIT', 0, count + 1)
    if #ids > count then
      ids[#ids] = nil
      more = 1
    end
  end
else
  ids = args_from(3)
end
local snap = snapshots(ids, get_many(K_TASKS, ids))
return {snap, more}
