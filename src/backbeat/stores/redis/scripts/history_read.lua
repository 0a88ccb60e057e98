-- ARGV: prefix, then "batch.line" references (the last part of history entries' members). For
-- each, two items: the first line of its batch (what the batch's entries share) and its
-- document, its line; false twice for one whose batch or line is gone. Each batch is read once
-- and only the lines asked for are cut out.
local find, sub = string.find, string.sub
local starts, blobs, out = {}, {}, {}
for i = 2, #ARGV do
  local batch, line = string.match(ARGV[i], '^(%d+)%.(%d+)$')
  local blob = batch and blobs[batch]
  if batch and blob == nil then
    blob = redis.call('HGET', P .. 'history_batch:' .. batch, 'd')
    local at = {1}
    if blob then
      local found = find(blob, '\n', 1, true)
      while found do
        at[#at + 1] = found + 1
        found = find(blob, '\n', found + 1, true)
      end
    end
    blobs[batch], starts[batch] = blob, at
  end
  local at = blob and starts[batch]
  local first = at and at[tonumber(line) + 1]
  if first then
    out[#out + 1] = sub(blob, 1, at[2] - 2)
    out[#out + 1] = sub(blob, first, (at[tonumber(line) + 2] or #blob + 2) - 2)
  else
    out[#out + 1], out[#out + 2] = false, false
  end
end
return out
