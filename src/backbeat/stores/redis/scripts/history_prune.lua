-- ARGV: prefix, then history_by_task members to remove, then '' and entry ids of entries
-- written before key layout 7 whose members are not known (their documents cannot be read).
-- A member "task id NUL end NUL entry id NUL batch.line" leaves both indexes, and its batch goes
-- with the last of its entries; a member of an older layout, "task id NUL end NUL entry id",
-- leaves the per-task index, and its id the end-time index and the documents. Returns how many
-- entries were removed (one removed already, by another process, is not counted).
local K_BY_TASK, K_AT, K_LIVE = P .. 'history_by_task', P .. 'history_at', P .. 'history_live'
local K_OLD, K_DOCS = P .. 'history', P .. 'history_docs'
local removed, gone, ids, i = 0, {}, {}, 2
while i <= #ARGV and ARGV[i] ~= '' do
  local member = ARGV[i]
  local id, batch = string.match(member, '^[^%z]*%z%d+%z([^%z]*)%z?(%d*)')
  if batch and batch ~= '' then
    redis.call('ZREM', K_BY_TASK, member)
    if redis.call('ZREM', K_AT, member) == 1 then
      removed = removed + 1
      gone[batch] = (gone[batch] or 0) + 1
    end
  elseif id then
    redis.call('ZREM', K_BY_TASK, member)
    ids[#ids + 1] = id
  end
  i = i + 1
end
for j = i + 1, #ARGV do
  ids[#ids + 1] = ARGV[j]
end
for _, id in ipairs(ids) do
  redis.call('ZREM', K_OLD, id)
  removed = removed + redis.call('HDEL', K_DOCS, id)
end
for batch, count in pairs(gone) do
  if redis.call('HINCRBY', K_LIVE, batch, -count) <= 0 then
    redis.call('HDEL', K_LIVE, batch)
    redis.call('DEL', P .. 'history_batch:' .. batch)
  end
end
return removed
