"""Store operations on run history: record, prune a task at a time, read a page."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from backbeat.model.history import PRUNE_BATCH, HistoryEntry, HistoryQuery
from backbeat.stores._history import decode, page
from backbeat.stores.sql.steps import Dialect, Txn, execute, execute_many, fetch, to_us


def record(d: Dialect, entries: Sequence[HistoryEntry]) -> Txn[None]:
    rows = [(e.id, e.task_id, to_us(e.ended_at), str(e.outcome), e.to_bytes().decode()) for e in entries]
    yield from execute_many(d.sql.INSERT_HISTORY, rows)


def prune(d: Dialect, task_ids: Sequence[str], before: datetime, keep: int) -> Txn[int]:
    """Each task's entries past ``before`` or beyond its newest ``keep``, then a batch of any
    task's entries past ``before``, through the (task, end) and (end) indexes."""
    cutoff = to_us(before)
    removed = 0
    for task_id in sorted(set(task_ids)):
        removed += yield from execute(d.sql.PRUNE_TASK_OLD, task_id, cutoff)
        removed += yield from execute(d.sql.PRUNE_TASK_EXCESS, task_id, keep)
    removed += yield from execute(d.sql.PRUNE_OLD, cutoff, PRUNE_BATCH)
    return removed


def query(d: Dialect, q: HistoryQuery) -> Txn[tuple[list[HistoryEntry], str | None]]:
    after = q.after()
    outcomes = None if q.outcomes is None else d.array(sorted(q.outcomes))
    params = (
        outcomes,
        None if q.since is None else to_us(q.since),
        None if after is None else after[0],
        None if after is None else after[1],
        q.limit + 1,
    )
    if q.task_id is None:
        rows = yield from fetch(d.sql.HISTORY, *params)
    else:
        rows = yield from fetch(d.sql.TASK_HISTORY, *params, q.task_id)
    return page(decode((str(row[0]), row[1]) for row in rows), q.limit)
