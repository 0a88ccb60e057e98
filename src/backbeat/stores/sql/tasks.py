"""Store operations on tasks: add, read, update, list, remove (one transaction each)."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from typing import Any

from backbeat.errors import TaskExistsError
from backbeat.model.overlap import BUFFERED_UNTIL
from backbeat.model.records import QuarantinedRecord, Task, TaskFilter
from backbeat.stores.sql.records import Corrupt, decode, first, quarantine, task_row
from backbeat.stores.sql.steps import Dialect, Txn, execute, execute_many, fetch, fetch_ids, notify, to_us

log = logging.getLogger("backbeat.stores.sql")


def _set_tags(d: Dialect, tasks: Iterable[Task]) -> Txn[None]:
    pairs = [(task.id, tag) for task in tasks for tag in task.tags]
    if pairs:
        yield from execute(d.sql.INSERT_TAGS, d.array(p[0] for p in pairs), d.array(p[1] for p in pairs))


def add(d: Dialect, tasks: list[Task], replace: bool) -> Txn[None]:
    # rows in id order: two concurrent adds then lock rows in the same order (no deadlock)
    rows = sorted((task_row(task) for task in tasks), key=lambda row: str(row[0]))
    ids = [str(row[0]) for row in rows]
    if replace:
        yield from execute_many(d.sql.UPSERT_TASK, rows)
        yield from execute(d.sql.DELETE_TAGS, d.array(ids))
    elif len(rows) == 1:  # the insert's duplicate key names the one id: no look-up first
        try:
            yield from execute_many(d.sql.INSERT_TASK, rows)
        except d.duplicate:
            raise TaskExistsError(ids) from None
    else:
        existing = yield from fetch_ids(d.sql.EXISTING_TASKS, d.array(ids))
        if not existing:
            existing = [task_id for task_id, n in Counter(ids).items() if n > 1]
        if existing:
            raise TaskExistsError(existing)
        try:
            yield from execute_many(d.sql.INSERT_TASK, rows)
        except d.duplicate:
            raise TaskExistsError(ids) from None  # added by another process just now
    yield from _set_tags(d, tasks)
    yield from notify()


def get(d: Dialect, task_id: str) -> Txn[Task | None]:
    return (yield from first(d, d.sql.GET_TASK, task_id))


def update(d: Dialect, task_id: str, changes: dict[str, Any]) -> Txn[Task | None]:
    """The updated task, or ``None`` if there is none (or it was just found corrupt)."""
    current = yield from first(d, d.sql.LOCK_TASK, task_id)
    if current is None:
        return None
    task = current.copy(**changes)
    task.version += 1
    row = task_row(task)
    yield from execute(
        d.sql.UPDATE_TASK, task.name, task.job, row[3], row[4], row[5], task.version, row[8], row[-1], task_id
    )
    if "tags" in changes:
        yield from execute(d.sql.DELETE_TAGS, d.array([task_id]))
        yield from _set_tags(d, [task])
    yield from notify()
    return task


def list_tasks(
    d: Dialect, filter: TaskFilter, cursor: str | None, limit: int | None
) -> Txn[tuple[list[Task], str | None]]:
    corrupt: Corrupt = []
    after, want = cursor, None if limit is None else limit + 1  # one more tells whether a next page exists
    page: list[Task] = []
    while True:
        rows = yield from fetch(
            d.sql.LIST_TASKS, after, filter.tag, filter.name, filter.job, filter.paused, filter.orphaned, want
        )
        page += [task for task in (decode(row, corrupt) for row in rows) if task is not None]
        if limit is None or want is None or len(page) > limit or len(rows) < want:
            break
        # corrupt rows were left out: read on after the last row to fill the page
        after, want = str(rows[-1][0]), limit + 1 - len(page)
    yield from quarantine(d, corrupt)
    if limit is not None and len(page) > limit:
        page = page[:limit]
        return page, page[-1].id if page else cursor
    return page, None


# A removal detaches the runs it leaves: they finish as runs of the removed incarnation, and a
# task added again under the same id never counts them. It detaches them before it deletes the
# task rows, locking runs before tasks as complete does (a run in id order, then its task, then
# the buffered run it promotes: the first pass leaves buffered runs alone), so a completion
# racing the removal waits instead of deadlocking; and once more after, for runs a fire that held
# a task row's lock (fire locks the task, then adds runs) created meanwhile.


def remove(d: Dialect, task_ids: list[str]) -> Txn[list[str]]:
    """The ids of the tasks removed (with their buffered runs; their runs in flight finish)."""
    ids = d.array(sorted(set(task_ids)))
    # a run without its task is a removed one's anyway
    yield from execute(d.sql.DETACH_IN_FLIGHT, ids, to_us(BUFFERED_UNTIL))
    removed = yield from fetch_ids(d.sql.REMOVE_TASKS, ids)
    yield from _drop_buffered(d, removed)
    return removed


def remove_by_tag(d: Dialect, tag: str) -> Txn[list[str]]:
    yield from execute(d.sql.DETACH_TAGGED, tag, to_us(BUFFERED_UNTIL))
    removed = sorted((yield from fetch_ids(d.sql.REMOVE_TAGGED, tag)))
    yield from _drop_buffered(d, removed)
    return removed


def _drop_buffered(d: Dialect, task_ids: list[str]) -> Txn[None]:
    if task_ids:
        yield from execute(d.sql.DROP_BUFFERED, d.array(task_ids), to_us(BUFFERED_UNTIL))
        yield from execute(d.sql.DETACH_RUNS, d.array(task_ids))


def clear(d: Dialect) -> Txn[None]:
    for statement in d.sql.CLEAR:
        yield from execute(statement)
    yield from notify()


def quarantine_task(d: Dialect, task_id: str, error: str) -> Txn[bool]:
    """Quarantine a task's record as it is (see ``Store.quarantine``); whether it was stored."""
    found = yield from execute(d.sql.QUARANTINE_TASK, error, task_id)
    if found:
        log.error("task %r quarantined, kept as stored: %s", task_id, error)
    return found > 0


def quarantined(d: Dialect) -> Txn[list[QuarantinedRecord]]:
    rows = yield from fetch(d.sql.QUARANTINED)
    return [
        QuarantinedRecord(
            key=key, raw=raw if isinstance(raw, str) else bytes(raw).decode(errors="replace"), error=e
        )
        for key, raw, e in rows
    ]
