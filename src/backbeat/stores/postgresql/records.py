"""How the PostgreSQL store reads tasks from rows: times, decoding, quarantine."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from backbeat.errors import CorruptRecordError
from backbeat.model import Task
from backbeat.stores.postgresql import queries as q
from backbeat.stores.postgresql.connection import Db

log = logging.getLogger("backbeat.stores.postgresql")
Corrupt = list[tuple[str, str, Any]]
"""Records found corrupt: (error, id, raw doc), the parameters of ``q.QUARANTINE``."""

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


def to_us(value: datetime) -> int:
    return (value - EPOCH) // _US


def opt_us(value: datetime | None) -> int | None:
    return None if value is None else (value - EPOCH) // _US


def from_us(value: int) -> datetime:
    return EPOCH + timedelta(microseconds=value)


def decode(row: Sequence[Any], corrupt: Corrupt) -> Task | None:
    """A task from its ``q.TASK_COLUMNS``; ``None`` (noted in ``corrupt``) if it cannot be decoded."""
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


async def quarantine(db: Db, corrupt: Corrupt) -> None:
    """Mark records found corrupt (left as they are otherwise)."""
    for error, task_id, _ in corrupt:
        log.error("task %r quarantined, kept as stored: %s", task_id, error)
    await db.executemany(q.QUARANTINE, corrupt)
    corrupt.clear()
