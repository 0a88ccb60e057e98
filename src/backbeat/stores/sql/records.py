"""Tasks as rows and back; rows that cannot be read are quarantined, never deleted."""

from __future__ import annotations

import logging
from typing import Any

from backbeat.errors import CorruptRecordError
from backbeat.model.records import Task
from backbeat.stores.sql.steps import Dialect, Row, Txn, execute_many, fetch, from_us, opt_us

log = logging.getLogger("backbeat.stores.sql")
Corrupt = list[tuple[str, str, Any]]
"""Records found corrupt: (error, id, raw doc), the parameters of ``QUARANTINE``."""


def task_row(task: Task) -> tuple[Any, ...]:
    """The ``INSERT_TASK`` parameters of a task."""
    return (
        task.id,
        task.name,
        task.job,
        opt_us(task.next_run_time),
        task.paused,
        task.orphaned is not None,
        task.version,
        task.running,
        task.options.max_instances,
        task.runs,
        task.failures,
        task.last_outcome,
        opt_us(task.last_run_at),
        task.to_bytes().decode(),
    )


def decode(row: Row, corrupt: Corrupt) -> Task | None:
    """A task from its ``TASK_COLUMNS``; ``None`` (noted in ``corrupt``) if it cannot be decoded."""
    task_id, doc, nrt, version, running, runs, failures, outcome, last = row[:9]
    try:
        task = Task.from_bytes(doc)
        task.next_run_time = None if nrt is None else from_us(nrt)
        task.version, task.running = int(version), int(running)
        task.runs, task.failures = int(runs), int(failures)
        task.last_outcome = outcome
        task.last_run_at = None if last is None else from_us(last)
    except CorruptRecordError as exc:
        corrupt.append((str(exc), task_id, doc))
        return None
    except (TypeError, ValueError, OverflowError, AttributeError, KeyError) as exc:
        corrupt.append((f"task {task_id!r} has invalid columns: {exc!r}", task_id, doc))
        return None
    return task


def quarantine(d: Dialect, corrupt: Corrupt) -> Txn[None]:
    """Mark records found corrupt (left as they are otherwise)."""
    for error, task_id, _ in corrupt:
        log.error("task %r quarantined, kept as stored: %s", task_id, error)
    yield from execute_many(d.sql.QUARANTINE, list(corrupt))
    corrupt.clear()


def first(d: Dialect, sql: str, *params: Any) -> Txn[Task | None]:
    """The task of the first row (quarantined if it cannot be read), or ``None``."""
    rows = yield from fetch(sql, *params)
    if not rows:
        return None
    corrupt: Corrupt = []
    task = decode(rows[0], corrupt)
    yield from quarantine(d, corrupt)
    return task
