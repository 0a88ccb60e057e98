-- ARGV: prefix, a budget, then history_by_task members to remove, then '' and entry ids of
-- entries written before key layout 7 whose members are not known (their documents cannot be
-- read), then '' and entries of history_at (batch.window) whose entries are all past their age,
-- oldest first: whole windows of them until the entries removed reach the budget.
-- A member "task id NUL end NUL entry id NUL batch.line" leaves the per-task index; a batch goes
-- when the last of its entries has (with its places in history_at), and an end-time entry once
-- its window's entries are removed. A member of an older layout, "task id NUL end NUL entry id",
-- leaves the per-task index, and its id the old end-time index and the documents. Returns how
-- many entries were removed (one removed already, by another process, is not counted).
local K_BY_TASK, K_AT, K_LIVE = P .. 'history_by_task', P .. 'history_at', P .. 'history_live'
local K_OLD, K_DOCS = P .. 'history', P .. 'history_docs'
local match = string.match
local removed, gone, ids = 0, {}, {}

local function drop(member, batch)
  if redis.call('ZREM', K_BY_TASK, member) == 1 then
    removed = removed + 1
    gone[batch] = (gone[batch] or 0) + 1
  end
end

local budget, i = tonumber(ARGV[2]), 3
while i <= #ARGV and ARGV[i] ~= '' do
  local member = ARGV[i]
  local id, batch = match(member, '^[^%z]*%z%d+%z([^%z]*)%z?(%d*)')
  if batch and batch ~= '' then
    drop(member, batch)
  elseif id then
    redis.call('ZREM', K_BY_TASK, member)
    ids[#ids + 1] = id
  end
  i = i + 1
end
i = i + 1
while i <= #ARGV and ARGV[i] ~= '' do
  ids[#ids + 1] = ARGV[i]
  i = i + 1
end
-- each batch read once a call into its members by window and its places in history_at: a window's
-- entries are not looked for among all of the batch's (a batch of thousands of windows, a
-- completion after an outage, would hold the server for seconds)
local batches, aged = {}, {}
local function batch_of(batch)
  local found = batches[batch]
  if not found then
    found = {windows = {}, spans = {}}
    for _, item in ipairs(history_listed(batch)) do
      local window = history_window(item[2])
      local members = found.windows[window]
      if not members then
        members = {}
        found.windows[window] = members
        found.spans[#found.spans + 1] = batch .. '.' .. window
      end
      members[#members + 1] = item[1]
    end
    batches[batch] = found
  end
  return found
end
for j = i + 1, #ARGV do
  if removed >= budget then
    break
  end
  local batch, window = match(ARGV[j], '^(%d+)%.(%d+)$')
  if batch then
    aged[batch] = true
    for _, member in ipairs(batch_of(batch).windows[window] or {}) do
      drop(member, batch)
    end
  end
  redis.call('ZREM', K_AT, ARGV[j])
end
for _, id in ipairs(ids) do
  redis.call('ZREM', K_OLD, id)
  removed = removed + redis.call('HDEL', K_DOCS, id)
end
-- A batch goes when the count of its entries left reaches 0, or when none of its windows is
-- left (each of its entries was in one): the count alone would keep for ever a batch whose
-- members a process of key layout 6 removed (it prunes the per-task index without counting).
for batch in pairs(aged) do
  gone[batch] = gone[batch] or 0
end
for batch, count in pairs(gone) do
  local spans = batch_of(batch).spans
  local empty = count > 0 and redis.call('HINCRBY', K_LIVE, batch, -count) <= 0
  if not empty and aged[batch] then
    empty = true
    for _, span in ipairs(spans) do
      if redis.call('ZSCORE', K_AT, span) then
        empty = false
        break
      end
    end
  end
  if empty then
    call_many('ZREM', K_AT, spans)
    redis.call('HDEL', K_LIVE, batch)
    redis.call('DEL', P .. 'history_batch:' .. batch)
  end
end
return removed
