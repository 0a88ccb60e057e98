-- ARGV: prefix, now (the caller's clock). Returns the earliest time, in the caller's clock,
-- something may become claimable, or false: an unclaimed task's next run time or a waiting
-- run's time as they are, a claim's or a leased run's end moved from the server's clock.
-- Tasks and claims have an index each (O(log N)); runs, which are few at a time, share one
-- sorted set of both clocks.
local shift = tonumber(ARGV[2]) - server_now()
local BATCH = 100

-- The earliest member of the runs' sorted set, scored by two clocks; by_server(ids) tells,
-- for a batch, which members hold a time of the server's clock.
local function earliest(key, by_server)
  local best = false
  local offset = 0
  while true do
    local batch = redis.call('ZRANGE', key, offset, offset + BATCH - 1, 'WITHSCORES')
    if #batch == 0 then
      return best
    end
    local ids = {}
    for i = 1, #batch, 2 do
      ids[#ids + 1] = batch[i]
    end
    local moved = by_server(ids)
    for j = 1, #ids do
      local score = tonumber(batch[2 * j])
      if best and score + math.min(shift, 0) >= best then
        return best -- every later member is later than best, whichever clock it is in
      end
      local t = score
      if moved[j] then
        t = score + shift
      end
      if not best or t < best then
        best = t
      end
    end
    offset = offset + BATCH
  end
end

-- the earliest unclaimed task and the earliest claim's end: the first member of each index
local best = false
local first = redis.call('ZRANGE', K_SCHEDULE, 0, 0, 'WITHSCORES')
if #first > 0 then
  best = tonumber(first[2])
end
first = redis.call('ZRANGE', K_CLAIMS, 0, 0, 'WITHSCORES')
if #first > 0 and (not best or tonumber(first[2]) + shift < best) then
  best = tonumber(first[2]) + shift
end
local leases = earliest(K_LEASES, function(ids)
  local moved = {}
  for i, found in ipairs(get_keys(keys_of(run_key, ids))) do
    moved[i] = found ~= false and parse_run(found)[3] ~= ''
  end
  return moved
end)
if leases and (not best or leases < best) then
  best = leases
end
if not best then
  return false
end
return us_text(best)
