"""The SQLite store's operations: plain functions of a connection, each run whole (one
transaction) in the store's worker thread. :mod:`backbeat.stores.sqlite` owns the thread,
the connection and the transactions; the SQL is in :mod:`backbeat.stores.sqlite_queries`.
"""

from __future__ import annotations

import logging
import sqlite3
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from backbeat.errors import CorruptRecordError, TaskExistsError, TaskNotFoundError
from backbeat.model import (
    Claim,
    FireDecision,
    FireResult,
    QuarantinedRecord,
    Run,
    RunOutcome,
    RunResult,
    Task,
    TaskFilter,
    run_id_for,
)
from backbeat.stores import sqlite_dead_letters as dead_letters
from backbeat.stores import sqlite_queries as q
from backbeat.stores.sqlite_dead_letters import save_dead_letter

Db = sqlite3.Connection
log = logging.getLogger("backbeat.stores.sqlite")
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


def ids_param(ids: Iterable[str]) -> str:
    """A list of ids as the JSON array that ``json_each(?)`` reads."""
    return orjson.dumps(list(ids)).decode()


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
    except (TypeError, ValueError, OverflowError) as exc:
        corrupt.append((f"task {task_id!r} has invalid columns: {exc!r}", task_id, doc))
        return None
    return task


def quarantine(db: Db, corrupt: Corrupt) -> None:
    """Mark records found corrupt (left as they are otherwise)."""
    for error, task_id, _ in corrupt:
        log.error("task %r quarantined, kept as stored: %s", task_id, error)
    db.executemany(q.QUARANTINE, corrupt)
    corrupt.clear()


def _row(task: Task) -> tuple[Any, ...]:
    """The ``q.INSERT_TASK`` parameters of a task."""
    flags = (int(task.paused), int(task.orphaned is not None), task.version, task.running)
    counters = (task.options.max_instances, task.runs, task.failures, task.last_outcome)
    doc = task.to_bytes().decode()
    return (
        task.id,
        task.name,
        task.job,
        opt_us(task.next_run_time),
        *flags,
        *counters,
        opt_us(task.last_run_at),
        doc,
    )


def _first(rows: Iterable[Sequence[Any]], corrupt: Corrupt) -> Task | None:
    row = next(iter(rows), None)
    return None if row is None else decode(row, corrupt)


def _set_tags(db: Db, tasks: Iterable[Task]) -> None:
    db.executemany(q.INSERT_TAG, [(task.id, tag) for task in tasks for tag in task.tags])


# -- tasks ------------------------------------------------------------------------------------


def add(db: Db, tasks: list[Task], replace: bool) -> None:
    rows = [_row(task) for task in tasks]
    ids = [row[0] for row in rows]
    if replace:
        db.executemany(q.UPSERT_TASK, rows)
        db.execute(q.DELETE_TAGS, (ids_param(ids),))
    else:
        existing = [row[0] for row in db.execute(q.EXISTING_TASKS, (ids_param(ids),))]
        if not existing:
            existing = [task_id for task_id, n in Counter(ids).items() if n > 1]
        if existing:
            raise TaskExistsError(existing)
        db.executemany(q.INSERT_TASK, rows)
    _set_tags(db, tasks)


def get(db: Db, corrupt: Corrupt, task_id: str) -> Task | None:
    return _first(db.execute(q.GET_TASK, (task_id,)), corrupt)


def update(db: Db, task_id: str, changes: dict[str, Any]) -> Task | None:
    """The updated task, or ``None`` if there is none (or it was just found corrupt)."""
    corrupt: Corrupt = []
    current = _first(db.execute(q.GET_TASK, (task_id,)), corrupt)
    if current is None:
        quarantine(db, corrupt)
        return None
    task = current.copy(**changes)
    task.version += 1
    row = _row(task)
    flags = (int(task.paused), int(task.orphaned is not None), task.version, task.options.max_instances)
    db.execute(q.UPDATE_TASK, (task.name, task.job, row[3], *flags, row[-1], task_id))
    if "tags" in changes:
        db.execute(q.DELETE_TAGS, (ids_param([task_id]),))
        _set_tags(db, [task])
    return task


def list_tasks(
    db: Db, corrupt: Corrupt, filter: TaskFilter, cursor: str | None, limit: int | None
) -> tuple[list[Task], str | None]:
    params: dict[str, Any] = {
        "tag": filter.tag,
        "name": filter.name,
        "job": filter.job,
        "paused": None if filter.paused is None else int(filter.paused),
        "orphaned": None if filter.orphaned is None else int(filter.orphaned),
        "after": cursor,
        "limit": -1 if limit is None else limit + 1,  # one more tells whether a next page exists
    }
    page: list[Task] = []
    while True:
        sql = q.LIST_TASKS if params["after"] is None else q.LIST_TASKS_AFTER
        rows = db.execute(sql, params).fetchall()
        page += [task for task in (decode(row, corrupt) for row in rows) if task is not None]
        if limit is None or len(page) > limit or len(rows) < params["limit"]:
            break
        # corrupt rows were left out: read on after the last row to fill the page
        params["after"], params["limit"] = rows[-1][0], limit + 1 - len(page)
    if limit is not None and len(page) > limit:
        page = page[:limit]
        return page, page[-1].id if page else cursor
    return page, None


def returned(db: Db, sql: str, params: Sequence[Any]) -> list[str]:
    """The ids a ``... RETURNING id`` statement returned."""
    return [row[0] for row in db.execute(sql, params)]


def clear(db: Db) -> None:
    for statement in q.CLEAR:
        db.execute(statement)


def quarantined(db: Db) -> list[QuarantinedRecord]:
    return [
        QuarantinedRecord(
            key=key, raw=raw if isinstance(raw, str) else bytes(raw).decode(errors="replace"), error=e
        )
        for key, raw, e in db.execute(q.QUARANTINED)
    ]


# -- claims, runs and leases --------------------------------------------------------------------


def claim(db: Db, owner: str, now: datetime, until: datetime, limit: int) -> Claim:
    now_us, until_us = to_us(now), to_us(until)
    claimed, corrupt = Claim(), Corrupt()
    leases: list[tuple[str, int, int, str]] = []
    for run_id, task_id, fire, attempt, old_owner in db.execute(q.CLAIMABLE_RUNS, (now_us, limit)).fetchall():
        # an owner that let its lease expire is presumed dead: this is a new attempt
        recovered = old_owner is not None
        run = Run(
            id=run_id,
            task_id=task_id,
            fire_time=from_us(fire),
            attempt=attempt + recovered,
            owner=owner,
            lease_until=until,
            recovered=recovered,
        )
        leases.append((owner, until_us, run.attempt, run_id))
        claimed.runs.append(run)
    if claimed.runs:
        db.executemany(q.LEASE_RUN, leases)
        found = db.execute(q.GET_TASKS, (ids_param({run.task_id for run in claimed.runs}),))
        snapshots = {row[0]: decode(row, corrupt) for row in found}
        for run in claimed.runs:
            run.task = snapshots.get(run.task_id)
        quarantine(db, corrupt)
    room, taken = limit - len(claimed.runs), set[str]()
    while len(taken) < room:
        want = room - len(taken)
        rows = db.execute(q.DUE_TASKS, (now_us, want)).fetchall()
        skipped = False
        for row in rows:
            task_id, nrt, claimed_by = row[0], row[2], row[9]
            if task_id in taken:
                continue
            if claimed_by is not None and (nrt is None or nrt > now_us):
                # an expired claim on a task changed since: it is simply due later
                db.execute(q.DROP_CLAIM, (task_id,))
                skipped = True
            elif (task := decode(row, corrupt)) is None:
                quarantine(db, corrupt)
                skipped = True
            else:
                db.execute(q.CLAIM_TASK, (owner, until_us, task_id))
                taken.add(task_id)
                claimed.tasks.append(task)
        # skipped rows left the due range for good, so another look may find more
        if not skipped or len(rows) < want:
            break
    return claimed


def fire(db: Db, owner: str, decisions: list[FireDecision], until: datetime) -> tuple[list[FireResult], bool]:
    """The results, and whether a task got a next run time (others may want to know)."""
    until_us = to_us(until)
    state = {row[0]: row for row in db.execute(q.FIRE_STATE, (ids_param(d.task_id for d in decisions),))}
    wanted = [run_id_for(d.task_id, t) for d in decisions for t in d.fire_times]
    existing = {row[0] for row in db.execute(q.EXISTING_RUNS, (ids_param(wanted),))} if wanted else set()
    results: list[FireResult] = []
    inserts: list[tuple[str, str, int, int, str, int]] = []
    updates: list[tuple[int, int | None, str]] = []
    deletes: list[tuple[str]] = []
    for decision in decisions:
        task_id = decision.task_id
        row = state.pop(task_id, None)  # popped: a second decision for it finds no claim
        if row is None or row[4] != owner:
            continue
        _, version, running, max_instances, _, nrt, quarantined = row
        result = FireResult(task_id=task_id, runs=[])
        for fire_time in decision.fire_times:
            run_id = run_id_for(task_id, fire_time)
            if run_id in existing:
                continue
            if running >= max_instances:
                result.skipped.append(fire_time)
                continue
            existing.add(run_id)
            running += 1
            fire_us = to_us(fire_time)
            inserts.append((run_id, task_id, fire_us, 1, owner, until_us))
            result.runs.append(
                Run(id=run_id, task_id=task_id, fire_time=from_us(fire_us), owner=owner, lease_until=until)
            )
        # a user's change since the claim wins over the trigger's next fire time
        if version == decision.claimed_version:
            nrt = opt_us(decision.next_run_time)
        if running == 0 and nrt is None and quarantined is None:
            deletes.append((task_id,))
            result.removed = True
        else:
            updates.append((running, nrt, task_id))
        results.append(result)
    db.executemany(q.INSERT_RUN, inserts)
    db.executemany(q.FIRED, updates)
    db.executemany(q.DELETE_TASK, deletes)
    return results, any(nrt is not None for _, nrt, _ in updates)


def complete(db: Db, owner: str, results: list[RunResult]) -> tuple[set[str], bool]:
    """The run ids not held by ``owner``, and whether a run was re-queued."""
    runs = {row[0]: row for row in db.execute(q.RUN_OWNERS, (ids_param(r.run.id for r in results),))}
    lost: set[str] = set()
    retries: list[tuple[int, int, str]] = []
    done: list[tuple[str]] = []
    counts: dict[str, list[Any]] = {}  # task id -> [finished, runs, failures, last_run_at, outcome]
    for result in results:
        row = runs.pop(result.run.id, None)
        if row is None or row[2] != owner:
            lost.add(result.run.id)
            continue
        if result.dead_letter:
            save_dead_letter(db, result, get(db, [], row[1]))
        deferred = result.outcome == RunOutcome.DEFERRED
        if result.retry_at is not None:
            retries.append((0 if deferred else 1, to_us(result.retry_at), row[0]))
            if deferred:
                continue  # a deferral counts nothing
        else:
            done.append((row[0],))
        count = counts.setdefault(row[1], [0, 0, 0, None, None])
        count[0] += result.retry_at is None
        count[1] += 1
        count[2] += result.outcome == RunOutcome.FAILURE
        count[3:] = to_us(result.finished_at), result.outcome.value
    db.executemany(q.RETRY_RUN, retries)
    db.executemany(q.DELETE_RUN, done)
    db.executemany(q.COUNT_RUNS, [(*count, task_id) for task_id, count in counts.items()])
    db.execute(q.REMOVE_FINISHED, (ids_param(counts),))
    return lost, bool(retries)


def release(db: Db, owner: str, run_ids: list[str], task_ids: list[str], now: datetime) -> bool:
    """Whether anything was released."""
    runs = db.execute(q.RELEASE_RUNS, (to_us(now), owner, ids_param(run_ids))).rowcount
    return runs + db.execute(q.RELEASE_TASKS, (owner, ids_param(task_ids))).rowcount > 0


def enqueue(db: Db, task_id: str, fire_time: datetime, now: datetime) -> Run | None:
    state = db.execute(q.ENQUEUE_STATE, (task_id,)).fetchone()
    if state is None:
        raise TaskNotFoundError(task_id)
    run_id, fire_us = run_id_for(task_id, fire_time), to_us(fire_time)
    if state[0] >= state[1] or db.execute(q.RUN_EXISTS, (run_id,)).fetchone():
        return None
    db.execute(q.INSERT_RUN, (run_id, task_id, fire_us, 1, None, to_us(now)))
    db.execute(q.ADD_RUNNING, (task_id,))
    return Run(id=run_id, task_id=task_id, fire_time=from_us(fire_us), lease_until=now)


def requeue_dead_letter(db: Db, letter_id: str, now: datetime) -> Run | None:
    """Turn a dead letter back into a waiting run (see ``Store.requeue_dead_letter``)."""
    letter = dead_letters.dead_letter(db, letter_id)
    if letter is None or db.execute(q.RUN_EXISTS, (letter.id,)).fetchone():
        return None
    if db.execute(q.ENQUEUE_STATE, (letter.task_id,)).fetchone() is None:
        if letter.task is None:
            return None
        add(db, [letter.task.copy(next_run_time=None, running=0)], replace=False)
    run = enqueue(db, letter.task_id, letter.fire_time, now)
    if run is not None:
        dead_letters.remove_dead_letters(db, ids_param([letter_id]))
    return run


def list_runs(db: Db, task_id: str | None) -> list[Run]:
    rows = db.execute(q.LIST_RUNS) if task_id is None else db.execute(q.LIST_TASK_RUNS, (task_id,))
    return [
        Run(id=i, task_id=t, fire_time=from_us(f), attempt=a, owner=o, lease_until=from_us(u))
        for i, t, f, a, o, u in rows
    ]


def next_wakeup(db: Db) -> datetime | None:
    times = [row[0] for sql in (q.NEXT_DUE, q.NEXT_LEASE) for row in db.execute(sql)]
    return None if not times else from_us(min(times))


def data_version(db: Db) -> int:
    """Changes whenever *another* connection committed to the file."""
    version: int = db.execute(q.DATA_VERSION).fetchone()[0]
    return version
