-- ARGV: prefix, the lowest end wanted (18 digits; '' for any), then history_at entries
-- (batch.window). Returns the members, in their batches' lists, of the entries of those windows
-- that end at or after the lowest end and are still in the per-task index (one pruned by its
-- task's count leaves its batch only with the last of the batch's entries).
local K_BY_TASK = P .. 'history_by_task'
local low, wanted, order = ARGV[2], {}, {}
for i = 3, #ARGV do
  local batch, window = string.match(ARGV[i], '^(%d+)%.(%d+)$')
  if batch then
    if not wanted[batch] then
      wanted[batch] = {}
      order[#order + 1] = batch
    end
    wanted[batch][window] = true
  end
end
local found = {}
for _, batch in ipairs(order) do
  local windows = wanted[batch]
  for _, item in ipairs(history_listed(batch)) do
    local member, ended = item[1], item[2]
    if (low == '' or ended >= low) and windows[history_window(ended)]
        and redis.call('ZSCORE', K_BY_TASK, member) then
      found[#found + 1] = member
    end
  end
end
return found
