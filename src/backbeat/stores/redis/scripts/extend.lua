-- ARGV: prefix, owner, lease (microseconds), then (fencing token, run_id) pairs. Pushes the
-- leases still held by owner under those tokens to the server's now + lease; returns their run ids.
local owner, lease_until = ARGV[2], us_text(server_now() + tonumber(ARGV[3]))
local run_ids, tokens = {}, {}
for i = 4, #ARGV, 2 do
  tokens[#tokens + 1] = ARGV[i]
  run_ids[#run_ids + 1] = ARGV[i + 1]
end
local held, leases = {}, {}
for i, found in ipairs(get_keys(keys_of(run_key, run_ids))) do
  if found and holds(parse_run(found), owner, tokens[i]) then
    held[#held + 1] = run_ids[i]
    leases[#leases + 1] = lease_until
    leases[#leases + 1] = run_ids[i]
  end
end
call_many('ZADD', K_LEASES, leases)
return held
