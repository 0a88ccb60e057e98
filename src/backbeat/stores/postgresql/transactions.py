"""The PostgreSQL store's operations: coroutines of one connection inside one transaction
(:class:`~backbeat.stores.postgresql.connection.Db`). :mod:`.store` owns the pool and the
transactions; the SQL is in :mod:`.queries`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import asyncpg  # type: ignore[import-untyped]

from backbeat.errors import TaskExistsError, TaskNotFoundError
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
from backbeat.stores.postgresql import dead_letters
from backbeat.stores.postgresql import queries as q
from backbeat.stores.postgresql.connection import Db
from backbeat.stores.postgresql.records import Corrupt, decode, from_us, opt_us, quarantine, to_us


def _row(task: Task) -> tuple[Any, ...]:
    """The ``q.INSERT_TASK`` parameters of a task."""
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


async def _set_tags(db: Db, tasks: Iterable[Task]) -> None:
    pairs = [(task.id, tag) for task in tasks for tag in task.tags]
    if pairs:
        await db.execute(q.INSERT_TAGS, [p[0] for p in pairs], [p[1] for p in pairs])


async def _first(db: Db, corrupt: Corrupt, template: str, *args: Any) -> Task | None:
    row = await db.fetchrow(template, *args)
    return None if row is None else decode(row, corrupt)


# -- tasks ------------------------------------------------------------------------------------


async def add(db: Db, tasks: list[Task], replace: bool) -> None:
    rows = sorted((_row(task) for task in tasks), key=lambda row: str(row[0]))
    ids = [str(row[0]) for row in rows]
    if replace:
        await db.executemany(q.UPSERT_TASK, rows)
        await db.execute(q.DELETE_TAGS, ids)
    else:
        existing = await db.ids(q.EXISTING_TASKS, ids)
        if not existing:
            existing = [task_id for task_id, n in Counter(ids).items() if n > 1]
        if existing:
            raise TaskExistsError(existing)
        try:
            await db.executemany(q.INSERT_TASK, rows)
        except asyncpg.exceptions.UniqueViolationError:
            raise TaskExistsError(ids) from None  # added by another process just now
    await _set_tags(db, tasks)
    await db.notify()


async def get(db: Db, task_id: str) -> Task | None:
    corrupt: Corrupt = []
    task = await _first(db, corrupt, q.GET_TASK, task_id)
    await quarantine(db, corrupt)
    return task


async def update(db: Db, task_id: str, changes: dict[str, Any]) -> Task | None:
    """The updated task, or ``None`` if there is none (or it was just found corrupt)."""
    corrupt: Corrupt = []
    current = await _first(db, corrupt, q.LOCK_TASK, task_id)
    if current is None:
        await quarantine(db, corrupt)
        return None
    task = current.copy(**changes)
    task.version += 1
    row = _row(task)
    await db.execute(
        q.UPDATE_TASK, task.name, task.job, row[3], row[4], row[5], task.version, row[8], row[-1], task_id
    )
    if "tags" in changes:
        await db.execute(q.DELETE_TAGS, [task_id])
        await _set_tags(db, [task])
    await db.notify()
    return task


async def list_tasks(
    db: Db, filter: TaskFilter, cursor: str | None, limit: int | None
) -> tuple[list[Task], str | None]:
    corrupt: Corrupt = []
    after, want = cursor, None if limit is None else limit + 1  # one more tells whether a next page exists
    page: list[Task] = []
    while True:
        rows = await db.fetch(
            q.LIST_TASKS, after, filter.tag, filter.name, filter.job, filter.paused, filter.orphaned, want
        )
        page += [task for task in (decode(row, corrupt) for row in rows) if task is not None]
        if limit is None or want is None or len(page) > limit or len(rows) < want:
            break
        # corrupt rows were left out: read on after the last row to fill the page
        after, want = str(rows[-1][0]), limit + 1 - len(page)
    await quarantine(db, corrupt)
    if limit is not None and len(page) > limit:
        page = page[:limit]
        return page, page[-1].id if page else cursor
    return page, None


async def quarantined(db: Db) -> list[QuarantinedRecord]:
    return [
        QuarantinedRecord(key=key, raw=raw, error=error) for key, raw, error in await db.fetch(q.QUARANTINED)
    ]


# -- claims, runs and leases --------------------------------------------------------------------


async def claim(db: Db, owner: str, now: datetime, until: datetime, limit: int) -> Claim:
    now_us, until_us = to_us(now), to_us(until)
    claimed, corrupt = Claim(), Corrupt()
    leases: list[tuple[str, int, int, str]] = []
    for run_id, task_id, fire, attempt, old_owner in await db.fetch(q.CLAIMABLE_RUNS, now_us, limit):
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
        await db.executemany(q.LEASE_RUN, leases)
        found = await db.fetch(q.GET_TASKS, list({run.task_id for run in claimed.runs}))
        snapshots = {row[0]: decode(row, corrupt) for row in found}
        for run in claimed.runs:
            run.task = snapshots.get(run.task_id)
        await quarantine(db, corrupt)
    room, taken = limit - len(claimed.runs), set[str]()
    while len(taken) < room:
        want = room - len(taken)
        rows = await db.fetch(q.DUE_TASKS, now_us, want)
        skipped = False
        mine: list[str] = []
        for row in rows:
            task_id, nrt, claimed_by = row[0], row[2], row[9]
            if task_id in taken:
                continue
            if claimed_by is not None and (nrt is None or nrt > now_us):
                # an expired claim on a task changed since: it is simply due later
                await db.execute(q.DROP_CLAIM, task_id)
                skipped = True
            elif (task := decode(row, corrupt)) is None:
                await quarantine(db, corrupt)
                skipped = True
            else:
                mine.append(task_id)
                taken.add(task_id)
                claimed.tasks.append(task)
        if mine:
            await db.execute(q.CLAIM_TASKS, owner, until_us, mine)
        # skipped rows left the due range for good, so another look may find more
        if not skipped or len(rows) < want:
            break
    return claimed


async def fire(
    db: Db, owner: str, decisions: list[FireDecision], until: datetime
) -> tuple[list[FireResult], bool]:
    """The results, and whether a task got a next run time (others may want to know)."""
    until_us = to_us(until)
    state = {row[0]: row for row in await db.fetch(q.FIRE_STATE, [d.task_id for d in decisions])}
    wanted = [run_id_for(d.task_id, t) for d in decisions for t in d.fire_times]
    existing = set(await db.ids(q.EXISTING_RUNS, wanted)) if wanted else set()
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
    await db.executemany(q.INSERT_RUN, inserts)
    await db.executemany(q.FIRED, updates)
    await db.executemany(q.DELETE_TASK, deletes)
    rescheduled = any(nrt is not None for _, nrt, _ in updates)
    if rescheduled:
        await db.notify()
    return results, rescheduled


async def complete(db: Db, owner: str, results: list[RunResult]) -> set[str]:
    """The run ids not held by ``owner``."""
    runs = {row[0]: row for row in await db.fetch(q.RUN_OWNERS, [r.run.id for r in results])}
    lost: set[str] = set()
    retries: list[tuple[int, int, str]] = []
    done: list[str] = []
    counts: dict[str, list[Any]] = {}  # task id -> [finished, runs, failures, last_run_at, outcome]
    for result in results:
        row = runs.pop(result.run.id, None)
        if row is None or row[2] != owner:
            lost.add(result.run.id)
            continue
        if result.dead_letter:
            await dead_letters.save_dead_letter(db, result, await _first(db, [], q.GET_TASK, row[1]))
        deferred = result.outcome == RunOutcome.DEFERRED
        if result.retry_at is not None:
            retries.append((0 if deferred else 1, to_us(result.retry_at), row[0]))
            if deferred:
                continue  # a deferral counts nothing
        else:
            done.append(row[0])
        count = counts.setdefault(row[1], [0, 0, 0, None, None])
        count[0] += result.retry_at is None
        count[1] += 1
        count[2] += result.outcome == RunOutcome.FAILURE
        count[3:] = to_us(result.finished_at), result.outcome.value
    await db.executemany(q.RETRY_RUN, retries)
    if done:
        await db.execute(q.DELETE_RUNS, done)
    await db.executemany(q.COUNT_RUNS, [(*counts[task_id], task_id) for task_id in sorted(counts)])
    if counts:
        await db.execute(q.REMOVE_FINISHED, list(counts))
    if retries:
        await db.notify()
    return lost


async def release(db: Db, owner: str, run_ids: list[str], task_ids: list[str], now: datetime) -> None:
    runs = await db.execute(q.RELEASE_RUNS, to_us(now), owner, run_ids)
    if runs + await db.execute(q.RELEASE_TASKS, owner, task_ids) > 0:
        await db.notify()


async def enqueue(db: Db, task_id: str, fire_time: datetime, now: datetime) -> Run | None:
    state = await db.fetchrow(q.ENQUEUE_STATE, task_id)
    if state is None:
        raise TaskNotFoundError(task_id)
    run_id, fire_us = run_id_for(task_id, fire_time), to_us(fire_time)
    if state[0] >= state[1] or await db.fetchrow(q.RUN_EXISTS, run_id) is not None:
        return None
    await db.execute(q.INSERT_RUN, run_id, task_id, fire_us, 1, None, to_us(now))
    await db.execute(q.ADD_RUNNING, task_id)
    await db.notify()
    return Run(id=run_id, task_id=task_id, fire_time=from_us(fire_us), lease_until=now)


async def requeue_dead_letter(db: Db, letter_id: str, now: datetime) -> Run | None:
    """Turn a dead letter back into a waiting run (see ``Store.requeue_dead_letter``)."""
    letter = await dead_letters.dead_letter(db, letter_id)
    if letter is None or await db.fetchrow(q.RUN_EXISTS, letter.id) is not None:
        return None
    if await db.fetchrow(q.ENQUEUE_STATE, letter.task_id) is None:
        if letter.task is None:
            return None
        await add(db, [letter.task.copy(next_run_time=None, running=0)], replace=False)
    run = await enqueue(db, letter.task_id, letter.fire_time, now)
    if run is not None:
        await db.execute(q.REMOVE_DEAD_LETTERS, [letter_id])
    return run


async def list_runs(db: Db, task_id: str | None) -> list[Run]:
    rows = await (db.fetch(q.LIST_RUNS) if task_id is None else db.fetch(q.LIST_TASK_RUNS, task_id))
    return [
        Run(id=i, task_id=t, fire_time=from_us(f), attempt=a, owner=o, lease_until=from_us(u))
        for i, t, f, a, o, u in rows
    ]


async def next_wakeup(db: Db) -> datetime | None:
    earliest = await db.fetchval(q.NEXT_WAKEUP)
    return None if earliest is None else from_us(int(earliest))
