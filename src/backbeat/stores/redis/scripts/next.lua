-- ARGV: prefix. Returns the earliest score of the schedule (next run times, claim ends) and run leases, or false.
local best = false
for _, key in ipairs({K_SCHEDULE, K_LEASES}) do
  local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  if first[2] and (not best or tonumber(first[2]) < tonumber(best)) then
    best = first[2]
  end
end
return best
