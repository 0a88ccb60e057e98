-- ARGV: prefix, now (the caller's clock). Returns the earliest time, in the caller's clock,
-- something may become claimable, or false: an unclaimed task's next run time or a waiting
-- run's time as they are, a claim's or a leased run's end moved from the server's clock.
-- Each is the first member of an index that holds times of one clock: O(log N), no scan.
local shift = tonumber(ARGV[2]) - server_now()
local best = false
for _, index in ipairs({{K_SCHEDULE, 0}, {K_CLAIMS, shift}, {K_WAITING, 0}, {K_LEASES, shift}}) do
  local first = redis.call('ZRANGE', index[1], 0, 0, 'WITHSCORES')
  if #first > 0 and (not best or tonumber(first[2]) + index[2] < best) then
    best = tonumber(first[2]) + index[2]
  end
end
if not best then
  return false
end
return us_text(best)
