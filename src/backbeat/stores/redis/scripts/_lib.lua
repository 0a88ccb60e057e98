-- Shared by every script (prepended at load time). ARGV[1] is the key prefix "{name}:";
-- every key starts with it, so all keys share one hash tag (one Redis Cluster slot).
--
-- Every script reads and writes a whole batch with a handful of variadic commands (one
-- redis.call costs more than the Lua work on an item): tasks are fields of one big hash;
-- claims and runs, of which there are few at a time, are string keys (MGET/MSET/DEL), since
-- a small hash is a listpack that HMGET scans once per field.
--
-- Key layout 3. A task is one field of K_TASKS, its record:
--   "nrt|ver|running|runs|failures|last_run|max_instances|flags|last_outcome|<document>"
-- the live fields the scripts change, then the document only Python writes (flags: p paused,
-- o orphaned, q quarantined; the outcome never holds '|'). A live field at its default
-- (0, max_instances 1, no time) is written empty. A run is "attempt|fire_time|fencing_token|owner"
-- (owner '' while waiting; its task id is the run id without '@' .. fire_time).
-- Times are epoch microseconds as decimal strings: exact in a double, and never passed
-- through Lua's tostring, which keeps only 14 digits.
local P = ARGV[1]
local K_TASKS = P .. 'tasks'
-- the id index (see index_add): bucket boundaries, scores 0; a bucket is P .. 'ids:' .. boundary
local K_IDX = P .. 'idx'
-- ids added since the last merge into the id index's buckets (see index_add), a list
local K_RECENT = P .. 'recent'
local K_TAGS = P .. 'tags'
-- unclaimed schedulable tasks scored by next run time (the callers' clock)
local K_SCHEDULE = P .. 'schedule'
-- claimed tasks scored by the claim's end (the server's clock)
local K_CLAIMS = P .. 'claims'
-- leased runs scored by the lease's end (the server's clock)
local K_LEASES = P .. 'leases'
-- waiting runs scored by when they become claimable (the callers' clock)
local K_WAITING = P .. 'waiting'
local K_QUARANTINE = P .. 'quarantine'
local K_DEAD = P .. 'dead'
-- ids of orphaned tasks (flag 'o'), scores 0: listing them reads no other task
local K_ORPHANED = P .. 'orphaned'
local K_DEAD_TASKS = P .. 'dead_tasks'
local K_STATE = P .. 'state'
local K_WAKEUP = P .. 'wakeup'
-- the last fencing token handed out: only ever incremented (clear keeps it)
local K_FENCING = P .. 'fencing'
-- ids of the runs a removed task left (remove.lua): they end as runs of that task, never of
-- one added again under its id; absent (as in stores written before it) while there are none
local K_DETACHED = P .. 'detached'
local NRT, VER, RUNNING, RUNS, FAILURES, LAST, MAX, FLAGS, OUTCOME = 1, 2, 3, 4, 5, 6, 7, 8, 9
local CHUNK = 2000 -- arguments per variadic call: unpack() is bounded by the Lua C stack

-- The server's clock in epoch microseconds: leases are judged by it, never by a client's.
-- TIME is not deterministic, so a script that calls it and then writes relies on script
-- effects replication (the default since Redis 5, the only mode since Redis 7).
local function server_now()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

-- An integer time as exact decimal text (tostring would keep 14 digits only).
local function us_text(n)
  return string.format('%.0f', n)
end

local function tag_key(tag)
  return P .. 'tag:' .. tag
end

-- the owner of a task's claim
local function claim_key(id)
  return P .. 'c:' .. id
end

-- a run: "attempt|fire_time|fencing_token|owner"
local function run_key(id)
  return P .. 'r:' .. id
end

-- a task's buffered runs (overlap policies): a sorted set of run ids, all scored 0, so its
-- order is the ids' and so their fire times' (every id of a task has the same prefix)
local function buffered_key(id)
  return P .. 'b:' .. id
end

-- the task id of a run id ("task_id@fire_time"; a fire time holds no '@'). A caller that has
-- the run's fire time passes it: cutting that off costs a fraction of the pattern's search,
-- which backtracks over the whole fire time (claim and complete do it for every run).
local function task_of(run_id, fire)
  if fire then
    return string.sub(run_id, 1, #run_id - #fire - 1)
  end
  return string.match(run_id, '^(.*)@[^@]*$')
end

-- What fire does with a fire time of a task with `running` runs (model.overlap.admit):
-- 'c' create a leased run, 'b' a buffered one, 's' skip. `buffers` < 0 means allow_all
-- (up to max runs at once), else one run at a time with up to `buffers` buffered behind it.
local function admit(buffers, running, max)
  if buffers < 0 then
    if running < max then
      return 'c'
    end
    return 's'
  end
  if running == 0 then
    return 'c'
  end
  if running - 1 < buffers then
    return 'b'
  end
  return 's'
end

local function keys_of(make, ids)
  local keys = {}
  for i, id in ipairs(ids) do
    keys[i] = make(id)
  end
  return keys
end

-- One variadic command (ZADD key score member ..., HDEL key field ...) over many items.
local function call_many(command, key, items)
  for i = 1, #items, CHUNK do
    redis.call(command, key, unpack(items, i, math.min(i + CHUNK - 1, #items)))
  end
end

-- ARGV from index first on, as a table (unpack() could overflow the Lua C stack).
local function args_from(first)
  local items = {}
  for i = first, #ARGV do
    items[#items + 1] = ARGV[i]
  end
  return items
end

-- A variadic command over keys only (MGET, MSET, DEL) for many items.
local function call_keys(command, items)
  local replies = {}
  for i = 1, #items, CHUNK do
    local part = redis.call(command, unpack(items, i, math.min(i + CHUNK - 1, #items)))
    if type(part) == 'table' then
      for j = 1, #part do
        replies[i + j - 1] = part[j]
      end
    end
  end
  return replies
end

-- Values of string keys (false where missing).
local function get_keys(keys)
  return call_keys('MGET', keys)
end

-- HMGET over many fields; missing ones are false.
local function get_many(key, fields)
  local values = {}
  for i = 1, #fields, CHUNK do
    local part = redis.call('HMGET', key, unpack(fields, i, math.min(i + CHUNK - 1, #fields)))
    for j = 1, #part do
      values[i + j - 1] = part[j]
    end
  end
  return values
end

-- string.match does in one C call what a find/sub loop does in eighteen
local RECORD_PATTERN = '^([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|(.*)$'
local DEFAULTS = {'', '0', '0', '0', '0', '', '1', '', ''}

-- A record as {nrt, ver, running, runs, failures, last, max, flags, outcome, document}, the
-- defaults filled in. A record that is not one (written by hand) is all document (`whole`), and
-- quarantined: join_live gives it back as it was, so no script writes anything into it.
local function parse_live(raw)
  local f = {string.match(raw, RECORD_PATTERN)}
  if #f == 0 then
    return {'', '0', '0', '0', '0', '', '1', 'q', '', raw, whole = true}
  end
  for i = 1, 9 do
    if f[i] == '' then
      f[i] = DEFAULTS[i]
    end
  end
  return f
end

-- Small integers and their text, looked up: Lua 5.1's tonumber reads a string with strtod twice
-- and tostring (or '..') formats a number with sprintf, 1,500 and 2,900 server instructions a
-- call against 240 for a look-up. Counts (running runs, max_instances, fire times) are mostly
-- small; `NUMBER[s] or tonumber(s)` is tonumber(s) for any s.
local NUMBER = {['-1'] = -1, ['0'] = 0, ['1'] = 1, ['2'] = 2, ['3'] = 3, ['4'] = 4, ['5'] = 5}
local TEXT = {[0] = '0', '1', '2', '3', '4', '5'}

-- value as stored, '' for its default; a number left out of TEXT is formatted by the caller's '..'
-- (as tostring would)
local function compact(value, default)
  value = TEXT[value] or value
  if value == default then
    return ''
  end
  return value
end

-- The live fields of f as stored (defaults left empty), without the document.
local function live_text(f)
  return f[1] .. '|' .. compact(f[2], '0') .. '|' .. compact(f[3], '0') .. '|' .. compact(f[4], '0') .. '|'
    .. compact(f[5], '0') .. '|' .. f[6] .. '|' .. compact(f[7], '1') .. '|' .. f[8] .. '|' .. f[9]
end

-- The record of f: its live fields and its document (a record that was not one, as it was).
local function join_live(f)
  if f.whole then
    return f[10]
  end
  return live_text(f) .. '|' .. f[10]
end

-- The (live fields, document) of a stored record, for a reply.
local function split_record(raw)
  local live, doc = string.match(raw, '^([^|]*|[^|]*|[^|]*|[^|]*|[^|]*|[^|]*|[^|]*|[^|]*|[^|]*)|(.*)$')
  if not live then
    return '', raw
  end
  return live, doc
end

-- {attempt, fire_time, owner, fencing_token}
local function parse_run(raw)
  local attempt, fire, token, owner = string.match(raw, '^([^|]*)|([^|]*)|(%d*)|(.*)$')
  if attempt then
    return {attempt, fire, owner, token}
  end
  -- written before fencing tokens: "attempt|fire_time|owner"
  local old = {string.match(raw, '^([^|]*)|([^|]*)|(.*)$')}
  old[4] = '0'
  return old
end

local function pack_run(attempt, fire, token, owner)
  return attempt .. '|' .. fire .. '|' .. token .. '|' .. owner
end

-- n new fencing tokens: the first of them (the others follow it, one apart)
local function new_tokens(n)
  return redis.call('INCRBY', K_FENCING, n) - n + 1
end

-- Whether run (parsed) is held by owner under token (text, as the client sent it).
local function holds(run, owner, token)
  return run[3] == owner and run[4] == token
end

local function schedulable(live)
  return live[NRT] ~= '' and live[FLAGS] == ''
end

local function decode_tags(raw)
  if not raw or raw == '' then
    return {}
  end
  local ok, tags = pcall(cjson.decode, raw)
  if ok and type(tags) == 'table' then
    return tags
  end
  return {}
end

-- Schedule an unclaimed task at its next run time iff it has one and nothing keeps it out.
local function reschedule(id, live)
  if redis.call('EXISTS', claim_key(id)) == 1 then
    return
  end
  if schedulable(live) then
    redis.call('ZADD', K_SCHEDULE, live[NRT], id)
  else
    redis.call('ZREM', K_SCHEDULE, id)
  end
end

-- The id index, in lexical order for listing, kept small: a sorted set of bucket boundaries
-- (K_IDX, scores 0), each bucket a sorted set P .. 'ids:' .. boundary of the ids from its
-- boundary up to the next one (the first boundary is ''). A bucket holds at most BUCKET ids,
-- so Redis keeps it a listpack (zset-max-listpack-entries, 128 by default): about 40 bytes
-- an id where one big sorted set takes 140. A bucket that grows past BUCKET is split in
-- fresh keys (a listpack turned into a skiplist never turns back). A ZADD into a bucket scans it
-- twice (is the id there, where does it go), so its cost follows the bucket's length: 64 rather
-- than 120 cut a single add's server instructions by about a tenth, for about 3 bytes an id of
-- bucket keys, which short boundaries (separator below) win back. Buckets written
-- bigger (up to 120, by an older backbeat) are read as they are and split by the next add that
-- grows them.
local BUCKET = 64

local function bucket_key(boundary)
  return P .. 'ids:' .. boundary
end

-- The boundary of the bucket that holds (or would hold) id; false while the index is empty.
local function bucket_of(id)
  local found = redis.call('ZREVRANGEBYLEX', K_IDX, '[' .. id, '-', 'LIMIT', 0, 1)
  return found[1] or false
end

-- ids grouped by their bucket: {boundary = {ids}}, and the boundaries in the order met.
local function by_bucket(ids)
  local groups, order = {}, {}
  for _, id in ipairs(ids) do
    local boundary = bucket_of(id)
    if not boundary then
      boundary = ''
      redis.call('ZADD', K_IDX, 0, '')
    end
    if not groups[boundary] then
      groups[boundary] = {}
      order[#order + 1] = boundary
    end
    table.insert(groups[boundary], id)
  end
  return groups, order
end

-- The shortest boundary between two sorted ids a < b: the shortest start of b that sorts after a
-- (any boundary in (a, b] splits the same; a short one keeps K_IDX and the bucket's key name small),
-- not cut inside a UTF-8 character (continuation bytes 0x80-0xBF): a boundary stays valid text.
-- It compares bytes, not strings, so it holds whatever Lua's locale (BYTE_ORDER).
local function separator(a, b)
  local k = 1
  while k <= #a and string.byte(a, k) == string.byte(b, k) do
    k = k + 1
  end
  local byte = string.byte(b, k + 1)
  while byte and byte >= 128 and byte < 192 do
    k = k + 1
    byte = string.byte(b, k + 1)
  end
  return string.sub(b, 1, k)
end

-- Cut a bucket grown past BUCKET into buckets about half full, each a new key.
local function split_bucket(boundary)
  local key = bucket_key(boundary)
  local n = redis.call('ZCARD', key)
  if n <= BUCKET then
    return
  end
  local ids = redis.call('ZRANGE', key, 0, -1)
  redis.call('DEL', key)
  local size = math.ceil(n / math.floor(n / (BUCKET / 2)))
  for first = 1, n, size do
    local piece = {}
    for i = first, math.min(first + size - 1, n) do
      piece[#piece + 1] = '0'
      piece[#piece + 1] = ids[i]
    end
    local bound = boundary
    if first > 1 then
      bound = separator(ids[first - 1], ids[first])
      redis.call('ZADD', K_IDX, 0, bound)
    end
    redis.call('ZADD', bucket_key(bound), unpack(piece))
  end
end

-- Whether Lua orders strings as Redis orders members (bytes, memcmp): Lua compares with strcoll,
-- and the server sets LC_COLLATE from its environment. Locales other than C / C.UTF-8 fail these
-- probes (case folded, punctuation ignored); then index_add looks up each id on its own.
local BYTE_ORDER = ('B' < 'a') and ('a-c' < 'ab') and ('Z' < '_') and ('9' < 'A') and ('ab' < 'a~')
  and ('\127' < '\128')

-- Sorted ids grouped by bucket: {ids} per group, and the groups' boundaries, a look-up per id.
local function walk_buckets(sorted)
  local groups, order = {}, {}
  for _, id in ipairs(sorted) do
    local boundary = bucket_of(id)
    if not boundary then
      boundary = ''
      redis.call('ZADD', K_IDX, 0, '')
    end
    if order[#order] == boundary then
      local group = groups[#groups]
      group[#group + 1] = id
    else
      groups[#groups + 1] = {id}
      order[#order + 1] = boundary
    end
  end
  return groups, order
end

-- Sorted ids grouped by bucket as walk_buckets does, against every boundary read at once.
local function group_by_bounds(sorted)
  local bounds = redis.call('ZRANGE', K_IDX, 0, -1)
  if #bounds == 0 then
    bounds[1] = ''
    redis.call('ZADD', K_IDX, 0, '')
  end
  local groups, order, b = {}, {}, 1
  for _, id in ipairs(sorted) do
    while b < #bounds and bounds[b + 1] <= id do
      b = b + 1
    end
    if order[#order] == bounds[b] then
      local group = groups[#groups]
      group[#group + 1] = id
    else
      groups[#groups + 1] = {id}
      order[#order + 1] = bounds[b]
    end
  end
  return groups, order
end

-- ids sorted (Lua's order must be the bytes', BYTE_ORDER) and grouped by bucket: {ids} per group,
-- and the groups' boundaries. Reading every boundary costs about 1,100 instructions each. A
-- look-up of one id's bucket walks a listpack of boundaries (up to 128, zset-max-listpack-entries)
-- from its end making a string of each, about 300 a boundary: reading them all pays from 4 ids on;
-- in a skiplist a look-up costs what reading about 6 boundaries does.
local function sorted_groups(ids)
  local sorted = {}
  for i, id in ipairs(ids) do
    sorted[i] = id
  end
  table.sort(sorted)
  local bounds = #sorted > 1 and redis.call('ZCARD', K_IDX)
  if bounds and ((bounds <= 128 and #sorted >= 4) or #sorted * 6 >= bounds) then
    return group_by_bounds(sorted)
  end
  return walk_buckets(sorted)
end

-- ZADD of ids (score 0) to key. The score is the string '0': a Lua number passed to
-- redis.call is formatted by snprintf first, each time.
local function add_members(key, ids)
  local members = {}
  for _, id in ipairs(ids) do
    members[#members + 1] = '0'
    members[#members + 1] = id
  end
  call_many('ZADD', key, members)
end

-- The sorted old members and new ids of a bucket cut into pieces about half full, in order:
-- {first = its boundary, from = .., to = .. (its old members by 1-based rank), new = {ids}}.
local function pieces_of(old, new)
  local total = #old + #new
  local size = math.ceil(total / math.max(math.floor(total / (BUCKET / 2)), 1))
  local pieces, i, j, last = {}, 1, 1, nil
  while i <= #old or j <= #new do
    local piece = {from = i, new = {}}
    for _ = 1, size do
      local id
      if j > #new or (i <= #old and old[i] < new[j]) then
        if i > #old then
          break
        end
        id = old[i]
        i = i + 1
      else
        id = new[j]
        piece.new[#piece.new + 1] = id
        j = j + 1
      end
      if not piece.first then
        piece.first = last and separator(last, id) or id
      end
      last = id
    end
    piece.to = i - 1
    pieces[#pieces + 1] = piece
  end
  return pieces
end

-- Cut the bucket at boundary, with sorted new ids that would grow it past BUCKET, into buckets
-- about half full. Each later piece starts as a COPY of the bucket (a listpack duplicated in one
-- go) cut down to its members by rank: ZADD of sorted members into a fresh listpack scans it for
-- each (the most of an add's server CPU it was). Without COPY (Redis < 6.2) its members are added.
local function split_with(boundary, new)
  local key = bucket_key(boundary)
  local old = redis.call('ZRANGE', key, 0, -1)
  local pieces = pieces_of(old, new)
  for p = #pieces, 2, -1 do
    local piece = pieces[p]
    local piece_key = bucket_key(piece.first)
    redis.call('ZADD', K_IDX, 0, piece.first)
    if piece.to >= piece.from then
      local copied = redis.pcall('COPY', key, piece_key, 'REPLACE')
      if type(copied) == 'table' and copied.err then
        add_members(piece_key, {unpack(old, piece.from, piece.to)})
      else
        redis.call('ZREMRANGEBYRANK', piece_key, piece.to, -1)
        if piece.from > 1 then
          redis.call('ZREMRANGEBYRANK', piece_key, 0, piece.from - 2)
        end
      end
    end
    add_members(piece_key, piece.new)
  end
  redis.call('ZREMRANGEBYRANK', key, pieces[1].to, -1)
  add_members(key, pieces[1].new)
end

-- Add ids to the index bucket by bucket: a bucket that would grow past BUCKET is split at once
-- (never turned into a skiplist and split after).
local function index_add_sorted(ids)
  local groups, order = sorted_groups(ids)
  for g, boundary in ipairs(order) do
    local group = groups[g]
    if redis.call('ZCARD', bucket_key(boundary)) + #group <= BUCKET then
      add_members(bucket_key(boundary), group)
    else
      split_with(boundary, group)
    end
  end
end

local function index_add(ids)
  if BYTE_ORDER then
    return index_add_sorted(ids)
  end
  local groups, order = by_bucket(ids)
  for _, boundary in ipairs(order) do
    local members = {}
    for _, id in ipairs(groups[boundary]) do
      members[#members + 1] = '0'
      members[#members + 1] = id
    end
    call_many('ZADD', bucket_key(boundary), members)
    split_bucket(boundary)
  end
end

-- Ids of single adds wait in the list K_RECENT: an RPUSH costs a tenth of a bucket look-up and a
-- listpack's ZADD. The add that makes it RECENT long moves them all into the buckets (a batch that
-- long goes there directly, with them); a producer-only deployment needs nothing else. Removals leave an id
-- in the list (a list has no cheap removal): the merge and index_page skip ids without a task, and
-- an id added again is in it twice.
local RECENT = 100

-- Whether a sorts before b as Redis orders members (bytes), whatever Lua's locale.
local function before(a, b)
  if BYTE_ORDER then
    return a < b
  end
  for k = 1, math.min(#a, #b) do
    local x, y = string.byte(a, k), string.byte(b, k)
    if x ~= y then
      return x < y
    end
  end
  return #a < #b
end

-- Move K_RECENT's ids, and new ids (ids without a task until this script), into the buckets.
-- A batch that goes to the buckets takes the list along: an id left there by a removal and added
-- again in the batch would otherwise be merged later into the buckets that already hold it (and a
-- split could then put it in two).
local function merge_recent(ids)
  local pending = redis.call('LRANGE', K_RECENT, 0, -1)
  if #pending == 0 then
    return index_add(ids)
  end
  redis.call('DEL', K_RECENT)
  local present, kept, seen = get_many(K_TASKS, pending), {}, {}
  for i, id in ipairs(pending) do
    if present[i] and not seen[id] then
      seen[id] = true
      kept[#kept + 1] = id
    end
  end
  for _, id in ipairs(ids) do
    if not seen[id] then
      seen[id] = true
      kept[#kept + 1] = id
    end
  end
  index_add(kept)
end

-- Index new ids: into K_RECENT, or with it into the buckets (see merge_recent).
local function index_new(ids)
  if #ids == 0 then
    return
  end
  if #ids < RECENT then
    local n = 0
    for i = 1, #ids, CHUNK do
      n = redis.call('RPUSH', K_RECENT, unpack(ids, i, math.min(i + CHUNK - 1, #ids)))
    end
    if n < RECENT then
      return
    end
    ids = {}
  end
  merge_recent(ids)
end

-- A completion removes hundreds of finished one-shots at once: sorted, they are grouped against
-- every boundary read at once (as index_add_sorted does), not by a ZREVRANGEBYLEX each.
local function index_remove(ids)
  local groups, order
  if BYTE_ORDER then
    groups, order = sorted_groups(ids)
  else
    local by
    by, order = by_bucket(ids)
    groups = {}
    for g, boundary in ipairs(order) do
      groups[g] = by[boundary]
    end
  end
  for g, boundary in ipairs(order) do
    local key = bucket_key(boundary)
    call_many('ZREM', key, groups[g])
    if boundary ~= '' and redis.call('EXISTS', key) == 0 then
      redis.call('ZREM', K_IDX, boundary) -- an empty bucket's key is gone: drop its boundary
    end
  end
end

-- Up to count ids of the buckets after ``after`` ('' from the start), in order, and whether more follow.
local function bucket_page(after, count)
  local ids = {}
  local boundary = ''
  if after ~= '' then
    boundary = bucket_of(after)
  end
  if boundary == false then
    return ids, false
  end
  local start = after == '' and '-' or '(' .. after
  while true do
    local need = count + 1 - #ids
    for _, id in ipairs(redis.call('ZRANGEBYLEX', bucket_key(boundary), start, '+', 'LIMIT', 0, need)) do
      ids[#ids + 1] = id
    end
    if #ids > count then
      ids[#ids] = nil
      return ids, true
    end
    local following = redis.call('ZRANGEBYLEX', K_IDX, '(' .. boundary, '+', 'LIMIT', 0, 1)
    if #following == 0 then
      return ids, false
    end
    boundary, start = following[1], '-'
  end
end

-- Up to count ids of the index (buckets and K_RECENT) after ``after`` ('' from the start), in
-- order, and whether more follow.
local function index_page(after, count)
  local ids, more = bucket_page(after, count)
  local listed = redis.call('LRANGE', K_RECENT, 0, -1)
  if #listed == 0 then
    return ids, more
  end
  local candidates, seen = {}, {}
  for _, id in ipairs(listed) do
    if not seen[id] and (after == '' or before(after, id)) then
      seen[id] = true
      candidates[#candidates + 1] = id
    end
  end
  local recent = {}
  for i, found in ipairs(get_many(K_TASKS, candidates)) do
    if found then
      recent[#recent + 1] = candidates[i]
    end
  end
  table.sort(recent, before)
  -- the first count ids of the buckets and all recent ones hold the first count of the index
  local merged, i, j = {}, 1, 1
  while #merged <= count and (i <= #ids or j <= #recent) do
    if j > #recent or (i <= #ids and not before(recent[j], ids[i])) then
      if j <= #recent and recent[j] == ids[i] then
        j = j + 1
      end
      merged[#merged + 1] = ids[i]
      i = i + 1
    else
      merged[#merged + 1] = recent[j]
      j = j + 1
    end
  end
  if #merged > count then
    merged[#merged] = nil
    return merged, true
  end
  return merged, more
end

-- Take ids out of their tag sets and K_TAGS.
local function untag(ids)
  local tags, tagged = get_many(K_TAGS, ids), {}
  for i, id in ipairs(ids) do
    if tags[i] then
      tagged[#tagged + 1] = id
      for _, tag in ipairs(decode_tags(tags[i])) do
        redis.call('ZREM', tag_key(tag), id)
      end
    end
  end
  call_many('HDEL', K_TAGS, tagged)
end

local function remove_tasks(ids)
  if #ids == 0 then
    return
  end
  untag(ids)
  call_many('HDEL', K_TASKS, ids)
  call_many('HDEL', K_QUARANTINE, ids)
  call_keys('DEL', keys_of(claim_key, ids))
  index_remove(ids)
  call_many('ZREM', K_SCHEDULE, ids)
  call_many('ZREM', K_CLAIMS, ids)
  call_many('ZREM', K_ORPHANED, ids)
end

-- Remove tasks whose last run ended (complete.lua), their parsed records in lives: unclaimed
-- (checked), not quarantined and without a next run time, so in neither the claims nor the
-- schedule (claim and fire took them out) nor the quarantine; orphaned only if flagged so. A
-- remove_tasks with fewer commands, which is most of what a finished one-shot costs.
local function remove_finished(ids, lives)
  if #ids == 0 then
    return
  end
  untag(ids)
  call_many('HDEL', K_TASKS, ids)
  local orphans = {}
  for _, id in ipairs(ids) do
    if string.find(lives[id][FLAGS], 'o', 1, true) then
      orphans[#orphans + 1] = id
    end
  end
  call_many('ZREM', K_ORPHANED, orphans)
  index_remove(ids)
end

-- Keep the orphaned index in step with a task's flags.
local function index_orphaned(id, flags)
  if string.find(flags, 'o', 1, true) then
    redis.call('ZADD', K_ORPHANED, 0, id)
  else
    redis.call('ZREM', K_ORPHANED, id)
  end
end

-- Tasks as one flat reply array, "id, live, doc, id, live, doc, ...", from their records (false
-- for a task that is gone); doc false (nil to the client) for a task that is gone or quarantined.
-- Not concatenated into one string: a string made in Lua is hashed whole (about 11 instructions a
-- byte), and table.concat makes and merges strings of 8 KB as it goes, about 8k instructions of
-- a claimed task's 48k; an element of the reply costs the server a few hundred, and the client
-- (hiredis) a bytes object, as slicing one string did.
local function snapshots(ids, records)
  local quarantined = get_many(K_QUARANTINE, ids)
  local flat = {}
  for i, id in ipairs(ids) do
    local live, doc = '', false
    if records[i] then
      live, doc = split_record(records[i])
      if quarantined[i] then
        doc = false
      end
    end
    flat[3 * i - 2], flat[3 * i - 1], flat[3 * i] = id, live, doc
  end
  return flat
end

local function wake()
  redis.call('PUBLISH', K_WAKEUP, '1')
end

-- Add a waiting run ``rid`` of task ``id`` for ``fire``, claimable at ``now``. Returns 'ok',
-- 'missing' (no such task, or quarantined), 'exists' (that run exists) or 'full' (max_instances).
local function add_waiting_run(id, rid, fire, now)
  local raw = redis.call('HGET', K_TASKS, id)
  if not raw then
    return 'missing'
  end
  local live = parse_live(raw)
  if string.find(live[FLAGS], 'q', 1, true) then
    return 'missing'
  end
  -- a run id a removed task left: its run (if still there) is adopted as this task's, as fire.lua does
  local adopted = redis.call('EXISTS', K_DETACHED) == 1 and redis.call('SREM', K_DETACHED, rid) == 1
  if redis.call('EXISTS', run_key(rid)) == 1 then
    if adopted then
      live[RUNNING] = tonumber(live[RUNNING]) + 1
      redis.call('HSET', K_TASKS, id, join_live(live))
    end
    return 'exists'
  end
  if tonumber(live[RUNNING]) >= tonumber(live[MAX]) then
    return 'full'
  end
  redis.call('SET', run_key(rid), pack_run('1', fire, '0', ''))
  redis.call('ZADD', K_WAITING, now, rid)
  live[RUNNING] = tonumber(live[RUNNING]) + 1
  redis.call('HSET', K_TASKS, id, join_live(live))
  wake()
  return 'ok'
end

-- Run history's end-time index (Keys.history_at) holds a batch once for each window of ends it
-- spans: the end (epoch microseconds, decimal) without its last HISTORY_WINDOW_DIGITS digits,
-- 10 ms wide (redis/history.py's WINDOW); a page past a cursor reads one window's batches more.
local HISTORY_WINDOW_DIGITS = 4

-- The window (HISTORY_WINDOW_DIGITS) of an end, given as decimal digits, zeros in front or not.
local function history_window(ended)
  local window = string.sub(string.match(ended, '^0*(%d-%d)$'), 1, -HISTORY_WINDOW_DIGITS - 1)
  return window == '' and '0' or window
end

-- Each member of a history batch's list (members joined by NULs, four parts each: task id, end
-- in 18 digits, entry id, batch.line), as {member, end}; none for a batch that is gone.
local function history_listed(batch)
  local list = redis.call('HGET', P .. 'history_batch:' .. batch, 'm')
  local found, at, find, sub = {}, 1, string.find, string.sub
  while list and at <= #list do
    local task_end = find(list, '\0', at, true)
    local id_end = find(list, '\0', task_end + 20, true)
    local ref_end = find(list, '\0', id_end + 1, true) or #list + 1
    found[#found + 1] = {sub(list, at, ref_end - 1), sub(list, task_end + 1, task_end + 18)}
    at = ref_end + 1
  end
  return found
end

-- ZADD's scores and items for history_at of a batch's members ("task id NUL end NUL entry id NUL
-- batch.line", the end 18 digits): the batch once per window of ends, scored by its latest end
-- there.
local function history_spans(batch, members)
  local latest, windows, find, sub = {}, {}, string.find, string.sub
  for _, member in ipairs(members) do
    local at = find(member, '\0', 1, true)
    local ended = string.match(sub(member, at + 1, at + 18), '^0*(%d-%d)$')
    local window = history_window(ended)
    local top = latest[window]
    if not top then
      windows[#windows + 1] = window
      latest[window] = ended
    elseif #ended > #top or (#ended == #top and ended > top) then
      latest[window] = ended
    end
  end
  local spans = {}
  for _, window in ipairs(windows) do
    spans[#spans + 1], spans[#spans + 2] = latest[window], batch .. '.' .. window
  end
  return spans
end
