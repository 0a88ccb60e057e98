"""The SQLite store's schema, as its ordered migrations (see :mod:`backbeat.stores.sql.migrations`).

Version 1 is the first release's file; version 2 added dead letters and shared state; version
3 indexes claim ends (leases are judged by the store's clock, apart from next run times); version
4 gives runs their fencing tokens; version 5 keeps run history; version 6 marks the runs a
removed task left (so a task added again under its id is not theirs); version 7 makes history's
(task, end) index unique with the entry id, so recording an entry twice is refused by the index
(and marks the lean history documents written from then on, which an older backbeat cannot
read). A
new schema change is one more :class:`Migration` at the end of :data:`MIGRATIONS`.
"""

from __future__ import annotations

from backbeat.stores.sql.migrations import Migration, ordered

MIGRATIONS = ordered(
    Migration(
        1,
        "tasks, their tags and runs",
        (
            """CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
)""",
            """CREATE TABLE IF NOT EXISTS tasks (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    job TEXT NOT NULL,
    next_run_time INTEGER,
    paused INTEGER NOT NULL DEFAULT 0,
    orphaned INTEGER NOT NULL DEFAULT 0,
    quarantined TEXT,
    claimed_by TEXT,
    claim_until INTEGER,
    version INTEGER NOT NULL DEFAULT 0,
    running INTEGER NOT NULL DEFAULT 0,
    max_instances INTEGER NOT NULL DEFAULT 1,
    runs INTEGER NOT NULL DEFAULT 0,
    failures INTEGER NOT NULL DEFAULT 0,
    last_outcome TEXT,
    last_run_at INTEGER,
    doc TEXT NOT NULL,
    due_at INTEGER GENERATED ALWAYS AS (
        CASE WHEN paused = 0 AND orphaned = 0 AND quarantined IS NULL
        THEN coalesce(claim_until, next_run_time) END
    ) VIRTUAL
)""",
            "CREATE INDEX IF NOT EXISTS tasks_due ON tasks (due_at) WHERE due_at IS NOT NULL",
            """CREATE TABLE IF NOT EXISTS task_tags (
    task_id TEXT NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    tag TEXT NOT NULL,
    PRIMARY KEY (task_id, tag)
) WITHOUT ROWID""",
            "CREATE INDEX IF NOT EXISTS task_tags_tag ON task_tags (tag)",
            """CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    task_id TEXT NOT NULL,
    fire_time INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    owner TEXT,
    lease_until INTEGER NOT NULL
)""",
            "CREATE INDEX IF NOT EXISTS runs_task ON runs (task_id)",
            "CREATE INDEX IF NOT EXISTS runs_lease ON runs (lease_until)",
        ),
    ),
    Migration(
        2,
        "dead letters and shared state documents",
        (
            """CREATE TABLE IF NOT EXISTS dead_letters (
    id TEXT PRIMARY KEY,
    task_id TEXT NOT NULL,
    failed_at INTEGER NOT NULL,
    doc TEXT NOT NULL
)""",
            "CREATE INDEX IF NOT EXISTS dead_letters_failed ON dead_letters (failed_at, id)",
            """CREATE TABLE IF NOT EXISTS state (
    key TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    value TEXT NOT NULL
)""",
        ),
    ),
    Migration(
        3,
        "an index of claim ends, for the next wake-up by the store's clock",
        ("CREATE INDEX tasks_claims ON tasks (claim_until) WHERE claimed_by IS NOT NULL",),
    ),
    Migration(
        4,
        "fencing tokens: one per run, from a counter that only grows",
        (
            "ALTER TABLE runs ADD COLUMN fencing_token INTEGER NOT NULL DEFAULT 0",
            "CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)",
            "INSERT INTO counters (name, value) VALUES ('fencing', 0)",
        ),
    ),
    Migration(
        5,
        "run history, indexed by task and end time, and by end time alone (age pruning)",
        (
            # A rowid table with short index keys: task ids are random, and a key holding the
            # long entry id (a unique one, or a WITHOUT ROWID table's) doubled the cost of an
            # insert in the bench. Recording an entry twice is prevented by INSERT_HISTORY.
            """CREATE TABLE history (
    task_id TEXT NOT NULL,
    ended_at INTEGER NOT NULL,
    id TEXT NOT NULL,
    outcome TEXT NOT NULL,
    doc TEXT NOT NULL
)""",
            "CREATE INDEX history_task_end ON history (task_id, ended_at)",
            "CREATE INDEX history_end ON history (ended_at)",
        ),
    ),
    Migration(
        6,
        "runs of a removed task are detached from any task added again under its id",
        ("ALTER TABLE runs ADD COLUMN detached INTEGER NOT NULL DEFAULT 0",),
    ),
    Migration(
        7,
        "run history's (task, end) index unique with the entry id: an entry recorded twice is ignored by it",
        (
            # Version 5 looked each entry up before inserting it (INSERT ... WHERE NOT EXISTS): that
            # probe cost about as much as the rest of the history in a fire; the unique index does
            # the check in the descent its insert makes anyway (the id in its keys costs far less).
            """DELETE FROM history WHERE rowid NOT IN (
    SELECT min(rowid) FROM history GROUP BY task_id, ended_at, id
)""",
            "DROP INDEX history_task_end",
            "CREATE UNIQUE INDEX history_task_end_id ON history (task_id, ended_at, id)",
        ),
    ),
)

__all__ = ["MIGRATIONS"]
