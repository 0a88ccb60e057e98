"""The PostgreSQL store's schema, as its ordered migrations (see :mod:`backbeat.stores.sql.migrations`).

Every table name is ``{p}_<table>`` (the table prefix). Version 1 is the schema of the first
release, dead letters and shared state included; version 2 indexes claim ends (leases are
judged by the server's clock, apart from next run times); version 3 gives runs their fencing
tokens; version 4 keeps run history; version 5 marks the runs a removed task left (so a task
added again under its id is not theirs); version 6 changes no table: history documents are
written leaner from then on (see ``HistoryEntry.to_bytes``), which an older backbeat cannot read.
A new schema change is one more :class:`Migration` at the end of :data:`MIGRATIONS`.
"""

from __future__ import annotations

from backbeat.stores.sql.migrations import Migration, ordered

MIGRATIONS = ordered(
    Migration(
        1,
        "tasks, their tags, runs, dead letters and shared state documents",
        (
            """CREATE TABLE IF NOT EXISTS {p}_meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
)""",
            """CREATE TABLE IF NOT EXISTS {p}_tasks (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    job TEXT NOT NULL,
    next_run_time BIGINT,
    paused BOOLEAN NOT NULL DEFAULT FALSE,
    orphaned BOOLEAN NOT NULL DEFAULT FALSE,
    quarantined TEXT,
    claimed_by TEXT,
    claim_until BIGINT,
    version BIGINT NOT NULL DEFAULT 0,
    running INTEGER NOT NULL DEFAULT 0,
    max_instances INTEGER NOT NULL DEFAULT 1,
    runs BIGINT NOT NULL DEFAULT 0,
    failures BIGINT NOT NULL DEFAULT 0,
    last_outcome TEXT,
    last_run_at BIGINT,
    doc TEXT NOT NULL,
    due_at BIGINT GENERATED ALWAYS AS (
        CASE WHEN NOT paused AND NOT orphaned AND quarantined IS NULL
        THEN coalesce(claim_until, next_run_time) END
    ) STORED
)""",
            "CREATE INDEX IF NOT EXISTS {p}_tasks_due ON {p}_tasks (due_at) WHERE due_at IS NOT NULL",
            """CREATE TABLE IF NOT EXISTS {p}_task_tags (
    task_id TEXT NOT NULL REFERENCES {p}_tasks (id) ON DELETE CASCADE,
    tag TEXT NOT NULL,
    PRIMARY KEY (task_id, tag)
)""",
            "CREATE INDEX IF NOT EXISTS {p}_task_tags_tag ON {p}_task_tags (tag)",
            """CREATE TABLE IF NOT EXISTS {p}_runs (
    id TEXT PRIMARY KEY,
    task_id TEXT NOT NULL,
    fire_time BIGINT NOT NULL,
    attempt INTEGER NOT NULL,
    owner TEXT,
    lease_until BIGINT NOT NULL
)""",
            "CREATE INDEX IF NOT EXISTS {p}_runs_task ON {p}_runs (task_id)",
            "CREATE INDEX IF NOT EXISTS {p}_runs_lease ON {p}_runs (lease_until)",
            """CREATE TABLE IF NOT EXISTS {p}_dead_letters (
    id TEXT PRIMARY KEY,
    task_id TEXT NOT NULL,
    failed_at BIGINT NOT NULL,
    doc TEXT NOT NULL
)""",
            "CREATE INDEX IF NOT EXISTS {p}_dead_letters_failed ON {p}_dead_letters (failed_at, id)",
            """CREATE TABLE IF NOT EXISTS {p}_state (
    key TEXT PRIMARY KEY,
    version BIGINT NOT NULL,
    value TEXT NOT NULL
)""",
        ),
    ),
    Migration(
        2,
        "an index of claim ends, for the next wake-up by the server's clock",
        ("CREATE INDEX {p}_tasks_claims ON {p}_tasks (claim_until) WHERE claimed_by IS NOT NULL",),
    ),
    Migration(
        3,
        "fencing tokens: one per run, from a sequence (dropped with the runs table, not by clear)",
        (
            "ALTER TABLE {p}_runs ADD COLUMN fencing_token BIGINT NOT NULL DEFAULT 0",
            "CREATE SEQUENCE {p}_fencing OWNED BY {p}_runs.fencing_token",
        ),
    ),
    Migration(
        4,
        "run history, indexed by task and end time, and by end time alone (age pruning)",
        (
            # the key is the (task, end) index itself; an entry's id, task and end never change
            """CREATE TABLE {p}_history (
    task_id TEXT NOT NULL,
    ended_at BIGINT NOT NULL,
    id TEXT NOT NULL,
    outcome TEXT NOT NULL,
    doc TEXT NOT NULL,
    PRIMARY KEY (task_id, ended_at, id)
)""",
            "CREATE INDEX {p}_history_end ON {p}_history (ended_at, id)",
        ),
    ),
    Migration(
        5,
        "runs of a removed task are detached from any task added again under its id",
        ("ALTER TABLE {p}_runs ADD COLUMN detached BOOLEAN NOT NULL DEFAULT FALSE",),
    ),
    Migration(
        6,
        "lean history documents (no id, epoch-microsecond times) from now on; stored ones stay readable",
        (),
    ),
)

__all__ = ["MIGRATIONS"]
