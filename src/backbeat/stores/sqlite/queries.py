"""The SQL of the SQLite store, as named statements.

Times are INTEGER microseconds since the epoch (UTC). A list of ids is passed as one JSON
array parameter and read with ``json_each``, so no statement is built at run time.
``tasks.due_at`` is a generated column: when the task next becomes claimable (its claim's
end while claimed, else its next run time), NULL while it cannot be claimed at all; its
partial index makes a claim an index range scan.
"""

from __future__ import annotations

from backbeat.stores.sql.migrations import VersionStatements

# The schema itself is in :mod:`backbeat.stores.sqlite.migrations`; a migration runs inside
# ``BEGIN IMMEDIATE``, which already keeps every other writer out.
VERSION = VersionStatements(
    table_exists="SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'",
    get="SELECT value FROM meta WHERE key = 'schema_version'",
    put="""
INSERT INTO meta (key, value) VALUES ('schema_version', ?)
ON CONFLICT (key) DO UPDATE SET value = excluded.value
""",
)
DATA_VERSION = "PRAGMA data_version"

# -- tasks ------------------------------------------------------------------------------------

TASK_COLUMNS = "id, doc, next_run_time, version, running, runs, failures, last_outcome, last_run_at"
"""What a Task is read from (see ``sqlite._decode``)."""

INSERT_TASK = """
INSERT INTO tasks (id, name, job, next_run_time, paused, orphaned, version, running, max_instances,
                   runs, failures, last_outcome, last_run_at, doc)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""
# A replacement keeps the live state (running, counters, a claim) and counts as a change.
UPSERT_TASK = (
    INSERT_TASK
    + """
ON CONFLICT (id) DO UPDATE SET
    name = excluded.name, job = excluded.job, next_run_time = excluded.next_run_time,
    paused = excluded.paused, orphaned = excluded.orphaned, quarantined = NULL,
    version = max(tasks.version + 1, excluded.version), max_instances = excluded.max_instances,
    doc = excluded.doc
"""
)
EXISTING_TASKS = "SELECT id FROM tasks WHERE id IN (SELECT value FROM json_each(?))"
DELETE_TAGS = "DELETE FROM task_tags WHERE task_id IN (SELECT value FROM json_each(?))"
INSERT_TAGS = """
INSERT OR IGNORE INTO task_tags (task_id, tag)
SELECT t.value, g.value FROM json_each(?1) AS t JOIN json_each(?2) AS g ON g.key = t.key
"""

GET_TASK = f"SELECT {TASK_COLUMNS} FROM tasks WHERE id = ? AND quarantined IS NULL"
LOCK_TASK = GET_TASK  # the transaction holds the file's write lock already
GET_TASKS = f"""
SELECT {TASK_COLUMNS} FROM tasks WHERE id IN (SELECT value FROM json_each(?)) AND quarantined IS NULL
"""
UPDATE_TASK = """
UPDATE tasks SET name = ?, job = ?, next_run_time = ?, paused = ?, orphaned = ?, version = ?,
                 max_instances = ?, doc = ?
WHERE id = ?
"""

LIST_TASKS = f"""
SELECT {TASK_COLUMNS} FROM tasks
WHERE quarantined IS NULL AND id > coalesce(?1, '')
  AND (?2 IS NULL OR id IN (SELECT task_id FROM task_tags WHERE tag = ?2))
  AND (?3 IS NULL OR name = ?3)
  AND (?4 IS NULL OR job = ?4)
  AND (?5 IS NULL OR paused = ?5)
  AND (?6 IS NULL OR orphaned = ?6)
ORDER BY id
LIMIT coalesce(?7, -1)
"""
"""Parameters: after (a cursor), tag, name, job, paused, orphaned, limit."""

REMOVE_TASKS = "DELETE FROM tasks WHERE id IN (SELECT value FROM json_each(?)) RETURNING id"
# the buffered runs of removed tasks (their runs in flight finish)
DROP_BUFFERED = """
DELETE FROM runs
WHERE lease_until = ?2 AND owner IS NULL AND task_id IN (SELECT value FROM json_each(?1))
"""
# the runs removed tasks leave in flight: theirs, never a task's added again under the same id
DETACH_RUNS = "UPDATE runs SET detached = 1 WHERE task_id IN (SELECT value FROM json_each(?))"
# the same before the task rows are deleted, for the runs that are not buffered (?2: a buffered
# run's lease_until); PostgreSQL's twin locks them in id order
DETACH_IN_FLIGHT = """
UPDATE runs SET detached = 1
WHERE task_id IN (SELECT value FROM json_each(?1)) AND NOT (owner IS NULL AND lease_until = ?2)
"""
DETACH_TAGGED = """
UPDATE runs SET detached = 1
WHERE task_id IN (SELECT task_id FROM task_tags WHERE tag = ?1) AND NOT (owner IS NULL AND lease_until = ?2)
"""
REMOVE_TAGGED = "DELETE FROM tasks WHERE id IN (SELECT task_id FROM task_tags WHERE tag = ?) RETURNING id"
CLEAR: tuple[str, ...] = (
    "DELETE FROM task_tags",
    "DELETE FROM tasks",
    "DELETE FROM runs",
    "DELETE FROM dead_letters",
    "DELETE FROM state",
    "DELETE FROM history",
)

# A corrupt record is only marked, and only if nobody rewrote it since it was read.
QUARANTINE = "UPDATE tasks SET quarantined = ? WHERE id = ? AND doc IS ?"
QUARANTINED = "SELECT id, doc, quarantined FROM tasks WHERE quarantined IS NOT NULL ORDER BY id"
QUARANTINE_TASK = "UPDATE tasks SET quarantined = ?, claimed_by = NULL, claim_until = NULL WHERE id = ?"

# -- claims -----------------------------------------------------------------------------------

# Parameters: the caller's now (waiting runs), a limit, the store's now (leases).
CLAIMABLE_RUNS = """
SELECT id, task_id, fire_time, attempt, owner, detached FROM runs
WHERE lease_until <= max(?1, ?3)
  AND (owner IS NULL AND lease_until <= ?1 OR owner IS NOT NULL AND lease_until <= ?3)
ORDER BY lease_until LIMIT ?2
"""
LEASE_RUN = "UPDATE runs SET owner = ?, lease_until = ?, attempt = ?, fencing_token = ? WHERE id = ?"
# the last of ?1 new fencing tokens (the transaction holds the file's write lock: no other writer)
NEXT_TOKENS = "UPDATE counters SET value = value + ?1 WHERE name = 'fencing' RETURNING value"
# Parameters: the horizon (next run times), a limit, the store's now (claim ends).
DUE_TASKS = f"""
SELECT {TASK_COLUMNS}, claimed_by FROM tasks
WHERE due_at <= max(?1, ?3)
  AND (claimed_by IS NULL AND due_at <= ?1 OR claimed_by IS NOT NULL AND due_at <= ?3)
ORDER BY due_at LIMIT ?2
"""
CLAIM_TASKS = """
UPDATE tasks SET claimed_by = ?, claim_until = ? WHERE id IN (SELECT value FROM json_each(?))
"""
DROP_CLAIM = "UPDATE tasks SET claimed_by = NULL, claim_until = NULL WHERE id = ?"

# -- fire and complete ------------------------------------------------------------------------

FIRE_STATE = """
SELECT id, version, running, max_instances, claimed_by, next_run_time, quarantined FROM tasks
WHERE id IN (SELECT value FROM json_each(?))
"""
EXISTING_RUNS = "SELECT id FROM runs WHERE id IN (SELECT value FROM json_each(?))"
# runs a removed task left under ids a task of its id fires again, made that task's (adopted)
ADOPT_RUNS = """
UPDATE runs SET detached = 0 WHERE id IN (SELECT value FROM json_each(?)) AND detached RETURNING id
"""
INSERT_RUN = """
INSERT INTO runs (id, task_id, fire_time, attempt, owner, lease_until, fencing_token)
VALUES (?, ?, ?, ?, ?, ?, ?)
"""
FIRED = """
UPDATE tasks SET running = ?, next_run_time = ?, claimed_by = NULL, claim_until = NULL WHERE id = ?
"""
DELETE_TASK = "DELETE FROM tasks WHERE id = ?"

RUN_OWNERS = """
SELECT id, task_id, owner, fencing_token, detached FROM runs WHERE id IN (SELECT value FROM json_each(?))
"""
RETRY_RUN = "UPDATE runs SET attempt = attempt + ?, owner = NULL, lease_until = ? WHERE id = ?"
DELETE_RUNS = "DELETE FROM runs WHERE id IN (SELECT value FROM json_each(?))"
COUNT_RUNS = """
UPDATE tasks SET running = max(running - ?, 0), runs = runs + ?, failures = failures + ?,
                 last_run_at = ?, last_outcome = ?
WHERE id = ?
"""
# a task with nothing left to run (and no claim whose owner may still fire it) leaves the store
REMOVE_FINISHED = """
DELETE FROM tasks
WHERE id IN (SELECT value FROM json_each(?)) AND running = 0 AND next_run_time IS NULL
  AND quarantined IS NULL AND claimed_by IS NULL
"""
# Parameters: the time they become claimable, the buffered runs' lease end, task ids. The
# earliest buffered run of each task becomes a waiting run (found through the lease index).
PROMOTE_BUFFERED = """
UPDATE runs SET lease_until = ?1
WHERE id IN (SELECT (SELECT r.id FROM runs AS r
                     WHERE r.lease_until = ?2 AND r.owner IS NULL AND r.task_id = t.value
                     ORDER BY r.fire_time LIMIT 1)
             FROM json_each(?3) AS t)
RETURNING id
"""

# -- leases -----------------------------------------------------------------------------------

# Parameters: the new lease end (or release time), the owner, run ids and their fencing tokens
# (two arrays, paired by position): only runs held under those tokens.
_HELD = """
FROM (SELECT i.value AS id, t.value AS token FROM json_each(?3) AS i JOIN json_each(?4) AS t ON t.key = i.key)
     AS held
WHERE runs.owner = ?2 AND runs.id = held.id AND runs.fencing_token = held.token
"""
EXTEND_RUNS = "UPDATE runs SET lease_until = ?1" + _HELD + "RETURNING runs.id"
RELEASE_RUNS = "UPDATE runs SET attempt = attempt + 1, owner = NULL, lease_until = ?1" + _HELD
RELEASE_TASKS = """
UPDATE tasks SET claimed_by = NULL, claim_until = NULL
WHERE claimed_by = ? AND id IN (SELECT value FROM json_each(?))
"""
ENQUEUE_STATE = "SELECT running, max_instances FROM tasks WHERE id = ? AND quarantined IS NULL"
RUN_EXISTS = "SELECT 1 FROM runs WHERE id = ?"
ADD_RUNNING = "UPDATE tasks SET running = running + 1 WHERE id = ?"

_RUN_COLUMNS = "id, task_id, fire_time, attempt, owner, lease_until, fencing_token, detached"
LIST_RUNS = f"SELECT {_RUN_COLUMNS} FROM runs ORDER BY id"
LIST_TASK_RUNS = f"SELECT {_RUN_COLUMNS} FROM runs WHERE task_id = ? ORDER BY id"

# the earliest next run time and waiting run (the callers' clock), claim end and lease end (the store's)
NEXT_WAKEUP = """
SELECT
    (SELECT due_at FROM tasks WHERE due_at IS NOT NULL AND claimed_by IS NULL ORDER BY due_at LIMIT 1),
    (SELECT lease_until FROM runs WHERE owner IS NULL ORDER BY lease_until LIMIT 1),
    (SELECT claim_until FROM tasks WHERE claimed_by IS NOT NULL AND due_at IS NOT NULL
     ORDER BY claim_until LIMIT 1),
    (SELECT lease_until FROM runs WHERE owner IS NOT NULL ORDER BY lease_until LIMIT 1)
"""

# -- dead letters and shared state --------------------------------------------------------------

SAVE_DEAD_LETTER = "INSERT OR REPLACE INTO dead_letters (id, task_id, failed_at, doc) VALUES (?, ?, ?, ?)"
DEAD_LETTERS = "SELECT id, doc FROM dead_letters ORDER BY failed_at, id"
TASK_DEAD_LETTERS = "SELECT id, doc FROM dead_letters WHERE task_id = ? ORDER BY failed_at, id"
DEAD_LETTER = "SELECT doc FROM dead_letters WHERE id = ?"
REMOVE_DEAD_LETTERS = "DELETE FROM dead_letters WHERE id IN (SELECT value FROM json_each(?)) RETURNING id"
GET_STATE = "SELECT value, version FROM state WHERE key = ?"
INSERT_STATE = "INSERT OR IGNORE INTO state (key, version, value) VALUES (?, 1, ?)"
UPDATE_STATE = "UPDATE state SET value = ?, version = version + 1 WHERE key = ? AND version = ?"

# -- run history ------------------------------------------------------------------------------

# an entry recorded already is ignored by the unique (task, end, id) index
INSERT_HISTORY = (
    "INSERT OR IGNORE INTO history (id, task_id, ended_at, outcome, doc) VALUES (?1, ?2, ?3, ?4, ?5)"
)
PRUNE_TASK_OLD = "DELETE FROM history WHERE task_id = ? AND ended_at < ?"
# everything at or before the task's (keep + 1)-th newest entry (none when it has no more)
PRUNE_TASK_EXCESS = """
DELETE FROM history WHERE task_id = ?1 AND (ended_at, id) <= (
    SELECT ended_at, id FROM history WHERE task_id = ?1 ORDER BY ended_at DESC, id DESC LIMIT 1 OFFSET ?2
)
"""
PRUNE_OLD = """
DELETE FROM history WHERE rowid IN (SELECT rowid FROM history WHERE ended_at < ? ORDER BY ended_at LIMIT ?)
"""
# Parameters: outcomes (JSON array or NULL), since, cursor end, cursor id, limit[, task id].
_HISTORY_WHERE = """
  (?1 IS NULL OR outcome IN (SELECT value FROM json_each(?1)))
  AND (?2 IS NULL OR ended_at >= ?2)
  AND (?3 IS NULL OR ended_at < ?3 OR (ended_at = ?3 AND id < ?4))
"""
HISTORY = f"SELECT id, doc FROM history WHERE {_HISTORY_WHERE} ORDER BY ended_at DESC, id DESC LIMIT ?5"
TASK_HISTORY = f"""
SELECT id, doc FROM history WHERE task_id = ?6 AND {_HISTORY_WHERE} ORDER BY ended_at DESC, id DESC LIMIT ?5
"""
