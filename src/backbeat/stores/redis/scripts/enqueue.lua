-- ARGV: prefix, task_id, fire_time, now.
-- Returns 'ok', 'missing' (no such task), 'exists' (that run exists) or 'full' (max_instances).
return add_waiting_run(ARGV[2], ARGV[2] .. '@' .. ARGV[3], ARGV[3], ARGV[4])
