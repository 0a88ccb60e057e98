-- ARGV: prefix, sizes, parts. Entry i is four numbers of sizes (a comma-separated list): the
-- lengths of its id and task id, its end (epoch microseconds) and the length of its JSON
-- document; parts holds id, task id and document of every entry, back to back. Two arguments
-- for any number of entries, read with string.sub: no JSON to decode here, no escaping of the
-- documents by the client. Records history entries; an id recorded already is left as it was.
-- The whole batch is four variadic commands: the documents (HMGET, then HSET of the new ones),
-- the end-time index and the per-task index (ZADD each; see Keys.history_by_task).
local K_HISTORY, K_DOCS, K_BY_TASK = P .. 'history', P .. 'history_docs', P .. 'history_by_task'
local sizes, parts, at = ARGV[2], ARGV[3], 1
local numbers = {}
for number in string.gmatch(sizes, '%d+') do
  numbers[#numbers + 1] = number
end
local ids, entries = {}, {}
for i = 1, #numbers, 4 do
  local id_end = at + tonumber(numbers[i])
  local task_end = id_end + tonumber(numbers[i + 1])
  local doc_end = task_end + tonumber(numbers[i + 3])
  local id = string.sub(parts, at, id_end - 1)
  ids[#ids + 1] = id
  entries[#entries + 1] = {id, string.sub(parts, id_end, task_end - 1), numbers[i + 2], string.sub(parts, task_end, doc_end - 1)}
  at = doc_end
end
local stored, seen = get_many(K_DOCS, ids), {}
local docs, times, members = {}, {}, {}
for i, entry in ipairs(entries) do
  local id, score = entry[1], entry[3]
  if not stored[i] and not seen[id] then
    seen[id] = true
    docs[#docs + 1], docs[#docs + 2] = id, entry[4]
    times[#times + 1], times[#times + 2] = score, id
    members[#members + 1] = 0
    members[#members + 1] = entry[2] .. '\0' .. string.rep('0', 18 - #score) .. score .. '\0' .. id
  end
end
call_many('HSET', K_DOCS, docs)
call_many('ZADD', K_HISTORY, times)
call_many('ZADD', K_BY_TASK, members)
return 0
