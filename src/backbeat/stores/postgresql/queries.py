"""The SQL of the PostgreSQL store, as named statement templates.

Every table name is ``{p}_<table>``, ``{p}`` being the store's table prefix (see
:func:`backbeat.stores.postgresql.connection.render`). Times are BIGINT microseconds since
the epoch (UTC). A list of ids is one ``text[]`` parameter read with ``= ANY($n)``.
``tasks.due_at`` is a generated column: when the task next becomes claimable (its claim's
end while claimed, else its next run time), NULL while it cannot be claimed at all; its
partial index makes a claim an index range scan. Claims lock what they take with
``FOR UPDATE SKIP LOCKED``: two owners claiming at once pass each other by.
"""

from __future__ import annotations

from backbeat.stores.sql.migrations import VersionStatements

# The schema itself is in :mod:`backbeat.stores.postgresql.migrations`.
SCHEMA_LOCK = "SELECT pg_advisory_xact_lock(hashtext('backbeat-schema:{p}'))"
"""Serialises the migrations of one table prefix (held until the migrating transaction ends)."""
VERSION = VersionStatements(
    # Not a read of the missing table, which would abort the migrating transaction, nor
    # to_regclass(), which after the wait for the lock may still miss a table created meanwhile
    # (it takes no lock, so the session has not taken in the catalog change): a scan of pg_class
    # sees what was committed before the statement.
    table_exists="""
SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relname = '{p}_meta' AND n.nspname = ANY(current_schemas(false))
""",
    get="SELECT value FROM {p}_meta WHERE key = 'schema_version'",
    put="""
INSERT INTO {p}_meta (key, value) VALUES ('schema_version', $1)
ON CONFLICT (key) DO UPDATE SET value = excluded.value
""",
    lock=SCHEMA_LOCK,
)
TABLES = ("task_tags", "tasks", "runs", "dead_letters", "state", "history", "meta")
NOTIFY = "SELECT pg_notify('{p}_wakeup', '')"

# -- tasks ------------------------------------------------------------------------------------

TASK_COLUMNS = "id, doc, next_run_time, version, running, runs, failures, last_outcome, last_run_at"
"""What a Task is read from (see ``transactions.decode``)."""

INSERT_TASK = """
INSERT INTO {p}_tasks (id, name, job, next_run_time, paused, orphaned, version, running, max_instances,
                       runs, failures, last_outcome, last_run_at, doc)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
"""
# New tasks in one statement, run on its own (autocommit): their rows, their tags and the
# wake-up, one round trip instead of BEGIN, a look-up of the ids, INSERT, NOTIFY and COMMIT. A
# taken id fails it whole (then the store asks which ids are taken). The tags' foreign key is
# checked at the statement's end, when the tasks' rows are there.
# Workers sleep until the earliest due_at at most (a task's next run time or its claim's end): the
# wake-up is sent only when no unclaimed stored task is due at or before the new one (the
# statement's snapshot does not hold the rows it inserts; a claim's end is in the store's clock,
# not the caller's, so claimed tasks do not count). A NOTIFY per add kept a started worker claiming.
ADD_ONE_TASK = """
WITH added AS (
    INSERT INTO {p}_tasks (id, name, job, next_run_time, paused, orphaned, version, running,
                           max_instances, runs, failures, last_outcome, last_run_at, doc)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
    RETURNING id
), tagged AS (
    INSERT INTO {p}_task_tags (task_id, tag) SELECT added.id, tag FROM added, unnest($15::text[]) AS tag
)
SELECT pg_notify('{p}_wakeup', '') FROM added
WHERE NOT EXISTS (SELECT FROM {p}_tasks WHERE due_at <= $4 AND claimed_by IS NULL)
"""
# The rows as one JSON array of arrays (``task_row``'s order): asyncpg encodes a Python list per
# column element by element, through isinstance checks against abstract classes (about 5 µs per
# task); orjson writes the whole batch in one call. jsonb, not json: json's ->> parses the
# element again for every field (that halved the adds/s).
ADD_TASKS = """
WITH added AS (
    INSERT INTO {p}_tasks (id, name, job, next_run_time, paused, orphaned, version, running,
                           max_instances, runs, failures, last_outcome, last_run_at, doc)
    SELECT r->>0, r->>1, r->>2, (r->>3)::bigint, (r->>4)::boolean, (r->>5)::boolean, (r->>6)::bigint,
           (r->>7)::integer, (r->>8)::integer, (r->>9)::bigint, (r->>10)::bigint, r->>11,
           (r->>12)::bigint, r->>13
    FROM jsonb_array_elements($1::text::jsonb) AS r
    RETURNING id, next_run_time
), tagged AS (
    INSERT INTO {p}_task_tags (task_id, tag) SELECT * FROM unnest($2::text[], $3::text[])
)
SELECT pg_notify('{p}_wakeup', '') WHERE EXISTS (SELECT FROM added)
    AND NOT EXISTS (
        SELECT FROM {p}_tasks WHERE due_at <= (SELECT min(next_run_time) FROM added) AND claimed_by IS NULL
    )
"""
# A replacement keeps the live state (running, counters, a claim) and counts as a change.
UPSERT_TASK = (
    INSERT_TASK
    + """
ON CONFLICT (id) DO UPDATE SET
    name = excluded.name, job = excluded.job, next_run_time = excluded.next_run_time,
    paused = excluded.paused, orphaned = excluded.orphaned, quarantined = NULL,
    version = greatest({p}_tasks.version + 1, excluded.version), max_instances = excluded.max_instances,
    doc = excluded.doc
"""
)
EXISTING_TASKS = "SELECT id FROM {p}_tasks WHERE id = ANY($1::text[]) ORDER BY id"
DELETE_TAGS = "DELETE FROM {p}_task_tags WHERE task_id = ANY($1::text[])"
INSERT_TAGS = """
INSERT INTO {p}_task_tags (task_id, tag) SELECT * FROM unnest($1::text[], $2::text[])
ON CONFLICT DO NOTHING
"""

GET_TASK = "SELECT " + TASK_COLUMNS + " FROM {p}_tasks WHERE id = $1 AND quarantined IS NULL"
LOCK_TASK = GET_TASK + " FOR UPDATE"
GET_TASKS = "SELECT " + TASK_COLUMNS + " FROM {p}_tasks WHERE id = ANY($1::text[]) AND quarantined IS NULL"
UPDATE_TASK = """
UPDATE {p}_tasks SET name = $1, job = $2, next_run_time = $3, paused = $4, orphaned = $5, version = $6,
                     max_instances = $7, doc = $8
WHERE id = $9
"""

LIST_TASKS = (
    "SELECT "
    + TASK_COLUMNS
    + """ FROM {p}_tasks
WHERE quarantined IS NULL AND ($1::text IS NULL OR id > $1)
  AND ($2::text IS NULL OR id IN (SELECT task_id FROM {p}_task_tags WHERE tag = $2))
  AND ($3::text IS NULL OR name = $3)
  AND ($4::text IS NULL OR job = $4)
  AND ($5::boolean IS NULL OR paused = $5)
  AND ($6::boolean IS NULL OR orphaned = $6)
ORDER BY id
LIMIT $7
"""
)

REMOVE_TASKS = "DELETE FROM {p}_tasks WHERE id = ANY($1::text[]) RETURNING id"
# the buffered runs of removed tasks (their runs in flight finish)
DROP_BUFFERED = "DELETE FROM {p}_runs WHERE lease_until = $2 AND owner IS NULL AND task_id = ANY($1::text[])"
# the runs removed tasks leave in flight: theirs, never a task's added again under the same id
DETACH_RUNS = "UPDATE {p}_runs SET detached = TRUE WHERE task_id = ANY($1::text[])"
# the same before the task rows are deleted, for the runs that are not buffered ($2: a buffered
# run's lease_until), locked in id order: complete locks a run, then its task, then the buffered
# run it promotes, so a removal must not lock a buffered run before a running one
DETACH_IN_FLIGHT = """
UPDATE {p}_runs SET detached = TRUE WHERE id IN (
  SELECT id FROM {p}_runs WHERE task_id = ANY($1::text[]) AND NOT (owner IS NULL AND lease_until = $2)
  ORDER BY id FOR UPDATE)
"""
DETACH_TAGGED = """
UPDATE {p}_runs SET detached = TRUE WHERE id IN (
  SELECT id FROM {p}_runs
  WHERE task_id IN (SELECT task_id FROM {p}_task_tags WHERE tag = $1)
    AND NOT (owner IS NULL AND lease_until = $2)
  ORDER BY id FOR UPDATE)
"""
REMOVE_TAGGED = (
    "DELETE FROM {p}_tasks WHERE id IN (SELECT task_id FROM {p}_task_tags WHERE tag = $1) RETURNING id"
)
CLEAR: tuple[str, ...] = (
    "TRUNCATE {p}_task_tags, {p}_tasks, {p}_runs, {p}_dead_letters, {p}_state, {p}_history",
)

# A corrupt record is only marked, and only if nobody rewrote it since it was read.
QUARANTINE = "UPDATE {p}_tasks SET quarantined = $1 WHERE id = $2 AND doc IS NOT DISTINCT FROM $3"
QUARANTINED = "SELECT id, doc, quarantined FROM {p}_tasks WHERE quarantined IS NOT NULL ORDER BY id"
QUARANTINE_TASK = "UPDATE {p}_tasks SET quarantined = $1, claimed_by = NULL, claim_until = NULL WHERE id = $2"

# -- claims -----------------------------------------------------------------------------------

# Parameters: the caller's now (waiting runs), a limit, the store's now (leases).
CLAIMABLE_RUNS = """
SELECT id, task_id, fire_time, attempt, owner, detached FROM {p}_runs
WHERE lease_until <= greatest($1::bigint, $3::bigint)
  AND (owner IS NULL AND lease_until <= $1 OR owner IS NOT NULL AND lease_until <= $3)
ORDER BY lease_until LIMIT $2 FOR UPDATE SKIP LOCKED
"""
LEASE_RUN = "UPDATE {p}_runs SET owner = $1, lease_until = $2, attempt = $3, fencing_token = $4 WHERE id = $5"
# $1 new fencing tokens (a sequence: concurrent claims do not wait for each other's commit)
NEXT_TOKENS = "SELECT nextval('{p}_fencing') FROM generate_series(1, $1::integer)"
# Parameters: the horizon (next run times), a limit, the store's now (claim ends).
DUE_TASKS = (
    "SELECT "
    + TASK_COLUMNS
    + """, claimed_by FROM {p}_tasks
WHERE due_at <= greatest($1::bigint, $3::bigint)
  AND (claimed_by IS NULL AND due_at <= $1 OR claimed_by IS NOT NULL AND due_at <= $3)
ORDER BY due_at LIMIT $2 FOR UPDATE SKIP LOCKED
"""
)
CLAIM_TASKS = "UPDATE {p}_tasks SET claimed_by = $1, claim_until = $2 WHERE id = ANY($3::text[])"
DROP_CLAIM = "UPDATE {p}_tasks SET claimed_by = NULL, claim_until = NULL WHERE id = $1"

# -- fire and complete ------------------------------------------------------------------------

FIRE_STATE = """
SELECT id, version, running, max_instances, claimed_by, next_run_time, quarantined FROM {p}_tasks
WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE
"""
EXISTING_RUNS = "SELECT id FROM {p}_runs WHERE id = ANY($1::text[])"
# runs a removed task left under ids a task of its id fires again, made that task's (adopted);
# one locked meanwhile (being completed or renewed) is left alone rather than waited for: fire
# holds task rows, and complete locks a run before its task
ADOPT_RUNS = """
UPDATE {p}_runs SET detached = FALSE WHERE id IN (
  SELECT id FROM {p}_runs WHERE id = ANY($1::text[]) AND detached FOR UPDATE SKIP LOCKED)
RETURNING id
"""
INSERT_RUN = """
INSERT INTO {p}_runs (id, task_id, fire_time, attempt, owner, lease_until, fencing_token)
VALUES ($1, $2, $3, $4, $5, $6, $7)
"""
FIRED = """
UPDATE {p}_tasks SET running = $1, next_run_time = $2, claimed_by = NULL, claim_until = NULL
WHERE id = $3
"""
DELETE_TASK = "DELETE FROM {p}_tasks WHERE id = $1"

RUN_OWNERS = """
SELECT id, task_id, owner, fencing_token, detached FROM {p}_runs
WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE
"""
RETRY_RUN = "UPDATE {p}_runs SET attempt = attempt + $1, owner = NULL, lease_until = $2 WHERE id = $3"
DELETE_RUNS = "DELETE FROM {p}_runs WHERE id = ANY($1::text[])"
COUNT_RUNS = """
UPDATE {p}_tasks SET running = greatest(running - $1, 0), runs = runs + $2, failures = failures + $3,
                     last_run_at = $4, last_outcome = $5
WHERE id = $6
"""
# a task with nothing left to run (and no claim whose owner may still fire it) leaves the store
REMOVE_FINISHED = """
DELETE FROM {p}_tasks
WHERE id = ANY($1::text[]) AND running = 0 AND next_run_time IS NULL
  AND quarantined IS NULL AND claimed_by IS NULL
"""
# Parameters: the time they become claimable, the buffered runs' lease end, task ids. The
# earliest buffered run of each task becomes a waiting run (found through the lease index).
PROMOTE_BUFFERED = """
UPDATE {p}_runs SET lease_until = $1
WHERE id IN (SELECT DISTINCT ON (task_id) id FROM {p}_runs
             WHERE lease_until = $2 AND owner IS NULL AND task_id = ANY($3::text[])
             ORDER BY task_id, fire_time)
RETURNING id
"""

# -- leases -----------------------------------------------------------------------------------

# Parameters: the new lease end (or release time), the owner, run ids and their fencing tokens
# (two arrays, paired by position): only runs held under those tokens.
_HELD = """
FROM unnest($3::text[], $4::bigint[]) AS held(id, token)
WHERE r.owner = $2 AND r.id = held.id AND r.fencing_token = held.token
"""
EXTEND_RUNS = "UPDATE {p}_runs AS r SET lease_until = $1" + _HELD + "RETURNING r.id"
RELEASE_RUNS = "UPDATE {p}_runs AS r SET attempt = r.attempt + 1, owner = NULL, lease_until = $1" + _HELD
RELEASE_TASKS = """
UPDATE {p}_tasks SET claimed_by = NULL, claim_until = NULL
WHERE claimed_by = $1 AND id = ANY($2::text[])
"""
ENQUEUE_STATE = (
    "SELECT running, max_instances FROM {p}_tasks WHERE id = $1 AND quarantined IS NULL FOR UPDATE"
)
RUN_EXISTS = "SELECT 1 FROM {p}_runs WHERE id = $1"
ADD_RUNNING = "UPDATE {p}_tasks SET running = running + 1 WHERE id = $1"

_RUN_COLUMNS = "id, task_id, fire_time, attempt, owner, lease_until, fencing_token, detached"
LIST_RUNS = "SELECT " + _RUN_COLUMNS + " FROM {p}_runs ORDER BY id"
LIST_TASK_RUNS = "SELECT " + _RUN_COLUMNS + " FROM {p}_runs WHERE task_id = $1 ORDER BY id"

# the earliest next run time and waiting run (the callers' clock), claim end and lease end (the store's)
NEXT_WAKEUP = """
SELECT
    (SELECT due_at FROM {p}_tasks WHERE due_at IS NOT NULL AND claimed_by IS NULL ORDER BY due_at LIMIT 1),
    (SELECT lease_until FROM {p}_runs WHERE owner IS NULL ORDER BY lease_until LIMIT 1),
    (SELECT claim_until FROM {p}_tasks WHERE claimed_by IS NOT NULL AND due_at IS NOT NULL
     ORDER BY claim_until LIMIT 1),
    (SELECT lease_until FROM {p}_runs WHERE owner IS NOT NULL ORDER BY lease_until LIMIT 1)
"""
STORE_NOW = "SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint"
"""The server's clock, which leases are judged by: ``clock_timestamp()`` is the time of the
statement, where ``now()`` would be the transaction's start."""

# -- dead letters and shared state --------------------------------------------------------------

SAVE_DEAD_LETTER = """
INSERT INTO {p}_dead_letters (id, task_id, failed_at, doc) VALUES ($1, $2, $3, $4)
ON CONFLICT (id) DO UPDATE SET task_id = excluded.task_id, failed_at = excluded.failed_at,
                               doc = excluded.doc
"""
DEAD_LETTERS = "SELECT id, doc FROM {p}_dead_letters ORDER BY failed_at, id"
TASK_DEAD_LETTERS = "SELECT id, doc FROM {p}_dead_letters WHERE task_id = $1 ORDER BY failed_at, id"
DEAD_LETTER = "SELECT doc FROM {p}_dead_letters WHERE id = $1 FOR UPDATE"
REMOVE_DEAD_LETTERS = "DELETE FROM {p}_dead_letters WHERE id = ANY($1::text[]) RETURNING id"
GET_STATE = "SELECT value, version FROM {p}_state WHERE key = $1"
INSERT_STATE = "INSERT INTO {p}_state (key, version, value) VALUES ($1, 1, $2) ON CONFLICT DO NOTHING"
UPDATE_STATE = "UPDATE {p}_state SET value = $1, version = version + 1 WHERE key = $2 AND version = $3"

# -- run history ------------------------------------------------------------------------------

INSERT_HISTORY = """
INSERT INTO {p}_history (id, task_id, ended_at, outcome, doc) VALUES ($1, $2, $3, $4, $5)
ON CONFLICT DO NOTHING
"""
PRUNE_TASK_OLD = "DELETE FROM {p}_history WHERE task_id = $1 AND ended_at < $2"
# everything at or before the task's (keep + 1)-th newest entry (none when it has no more)
PRUNE_TASK_EXCESS = """
DELETE FROM {p}_history WHERE task_id = $1 AND (ended_at, id) <= (
    SELECT ended_at, id FROM {p}_history WHERE task_id = $1 ORDER BY ended_at DESC, id DESC LIMIT 1 OFFSET $2
)
"""
PRUNE_OLD = """
DELETE FROM {p}_history WHERE (task_id, ended_at, id) IN (
    SELECT task_id, ended_at, id FROM {p}_history WHERE ended_at < $1 ORDER BY ended_at, id LIMIT $2
)
"""
# Parameters: outcomes (text[] or NULL), since, cursor end, cursor id, limit[, task id].
_HISTORY_WHERE = """
  ($1::text[] IS NULL OR outcome = ANY($1::text[]))
  AND ($2::bigint IS NULL OR ended_at >= $2)
  AND ($3::bigint IS NULL OR (ended_at, id) < ($3, $4::text))
"""
HISTORY = f"""
SELECT id, doc FROM {{p}}_history WHERE {_HISTORY_WHERE} ORDER BY ended_at DESC, id DESC LIMIT $5
"""
TASK_HISTORY = f"""
SELECT id, doc FROM {{p}}_history WHERE task_id = $6 AND {_HISTORY_WHERE}
ORDER BY ended_at DESC, id DESC LIMIT $5
"""

# -- bulk forms ---------------------------------------------------------------------------------
# One statement over column arrays instead of one execution per row: the driver uses these for
# the ``ExecuteMany`` of the statement each replaces (same parameters, transposed to columns).

INSERT_TASKS_BULK = """
INSERT INTO {p}_tasks (id, name, job, next_run_time, paused, orphaned, version, running, max_instances,
                       runs, failures, last_outcome, last_run_at, doc)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::boolean[], $6::boolean[],
                     $7::bigint[], $8::integer[], $9::integer[], $10::bigint[], $11::bigint[], $12::text[],
                     $13::bigint[], $14::text[])
"""
INSERT_RUNS_BULK = """
INSERT INTO {p}_runs (id, task_id, fire_time, attempt, owner, lease_until, fencing_token)
SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::integer[], $5::text[], $6::bigint[],
                     $7::bigint[])
"""
FIRED_BULK = """
UPDATE {p}_tasks AS t SET running = u.running, next_run_time = u.nrt, claimed_by = NULL, claim_until = NULL
FROM unnest($1::integer[], $2::bigint[], $3::text[]) AS u(running, nrt, id)
WHERE t.id = u.id
"""
COUNT_RUNS_BULK = """
UPDATE {p}_tasks AS t SET running = greatest(t.running - u.finished, 0), runs = t.runs + u.n,
                          failures = t.failures + u.failed, last_run_at = u.last, last_outcome = u.outcome
FROM unnest($1::integer[], $2::integer[], $3::integer[], $4::bigint[], $5::text[], $6::text[])
     AS u(finished, n, failed, last, outcome, id)
WHERE t.id = u.id
"""
LEASE_RUNS_BULK = """
UPDATE {p}_runs AS r SET owner = u.owner, lease_until = u.until, attempt = u.attempt, fencing_token = u.token
FROM unnest($1::text[], $2::bigint[], $3::integer[], $4::bigint[], $5::text[])
     AS u(owner, until, attempt, token, id)
WHERE r.id = u.id
"""
INSERT_HISTORY_BULK = """
INSERT INTO {p}_history (id, task_id, ended_at, outcome, doc)
SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[])
ON CONFLICT DO NOTHING
"""
BULK = {
    INSERT_HISTORY: INSERT_HISTORY_BULK,
    INSERT_TASK: INSERT_TASKS_BULK,
    INSERT_RUN: INSERT_RUNS_BULK,
    FIRED: FIRED_BULK,
    COUNT_RUNS: COUNT_RUNS_BULK,
    LEASE_RUN: LEASE_RUNS_BULK,
}
"""The bulk form of a statement run once per row (``INSERT_TASK``... → ``..._BULK``)."""
