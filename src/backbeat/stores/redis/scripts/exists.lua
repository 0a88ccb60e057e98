-- ARGV: prefix, task_id... Returns the ids that are stored.
local ids = args_from(2)
local found = {}
for i, live in ipairs(get_many(K_TASKS, ids)) do
  if live then
    found[#found + 1] = ids[i]
  end
end
return found
