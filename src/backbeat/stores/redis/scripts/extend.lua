-- ARGV: prefix, owner, lease (microseconds), run_id... Pushes the leases still held by owner
-- to the server's now + lease; returns their run ids.
local owner, lease_until = ARGV[2], us_text(server_now() + tonumber(ARGV[3]))
local run_ids = args_from(4)
local held, leases = {}, {}
for i, found in ipairs(get_keys(keys_of(run_key, run_ids))) do
  if found and parse_run(found)[3] == owner then
    held[#held + 1] = run_ids[i]
    leases[#leases + 1] = lease_until
    leases[#leases + 1] = run_ids[i]
  end
end
call_many('ZADD', K_LEASES, leases)
return held
