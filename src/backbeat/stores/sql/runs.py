"""Store operations on runs and leases: claim, fire, complete, extend, release, enqueue."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from backbeat.errors import TaskNotFoundError
from backbeat.model.completed_history import (
    SUCCESS_DOC,
    US,
    HistoryRow,
    history_row,
    owner_member,
    plain_success,
)
from backbeat.model.history import EPOCH, HistorySettings
from backbeat.model.overlap import BUFFERED_UNTIL, Admission, admit
from backbeat.model.records import Claim, FireDecision, FireResult, Run, RunOutcome, RunResult, run_id_for
from backbeat.stores.sql import dead_letters, tasks
from backbeat.stores.sql.records import Corrupt, decode, first, quarantine
from backbeat.stores.sql.steps import (
    Dialect,
    Txn,
    execute,
    execute_many,
    fetch,
    fetch_ids,
    fetch_one,
    from_us,
    notify,
    opt_us,
    to_us,
)

_US = timedelta(microseconds=1)
_BUFFERED_US = to_us(BUFFERED_UNTIL)


def claim(
    d: Dialect, owner: str, now: datetime, horizon: datetime, lease: timedelta, limit: int
) -> Txn[Claim]:
    """Runs claimable at ``now`` (waiting) or by the store's clock (lease ended), then tasks
    due by ``horizon`` that hold no live claim; leased until the store's now + ``lease``."""
    claimed = Claim()
    store_us = yield from d.clock()
    until_us = store_us + lease // _US
    yield from _claim_runs(d, claimed, owner, to_us(now), store_us, until_us, limit)
    room, taken = limit - len(claimed.runs), set[str]()
    horizon_us, corrupt = to_us(horizon), Corrupt()
    while len(taken) < room:
        want = room - len(taken)
        rows = yield from fetch(d.sql.DUE_TASKS, horizon_us, want, store_us)
        skipped = False
        mine: list[str] = []
        for row in rows:
            task_id, nrt, claimed_by = row[0], row[2], row[9]
            if task_id in taken:
                continue
            if claimed_by is not None and (nrt is None or nrt > horizon_us):
                # an expired claim on a task changed since: it is simply due later
                yield from execute(d.sql.DROP_CLAIM, task_id)
                skipped = True
            elif (task := decode(row, corrupt)) is None:
                yield from quarantine(d, corrupt)
                skipped = True
            else:
                mine.append(task_id)
                taken.add(task_id)
                claimed.tasks.append(task)
        if mine:
            yield from execute(d.sql.CLAIM_TASKS, owner, until_us, d.array(mine))
        # skipped rows left the due range for good, so another look may find more
        if not skipped or len(rows) < want:
            break
    return claimed


def _claim_runs(
    d: Dialect, claimed: Claim, owner: str, now_us: int, store_us: int, until_us: int, limit: int
) -> Txn[None]:
    """Lease the runs that are waiting or whose owner let the lease expire."""
    until = from_us(until_us)
    rows = yield from fetch(d.sql.CLAIMABLE_RUNS, now_us, limit, store_us)
    tokens = (yield from d.tokens(len(rows))) if rows else []
    leases: list[tuple[str, int, int, int, str]] = []
    detached: set[str] = set()
    for (run_id, task_id, fire, attempt, old_owner, of_removed), token in zip(rows, tokens, strict=True):
        if of_removed:
            detached.add(run_id)
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
            fencing_token=token,
        )
        leases.append((owner, until_us, run.attempt, token, run_id))
        claimed.runs.append(run)
    if claimed.runs:
        yield from execute_many(d.sql.LEASE_RUN, leases)
        corrupt = Corrupt()
        found = yield from fetch(d.sql.GET_TASKS, d.array({run.task_id for run in claimed.runs}))
        snapshots = {row[0]: decode(row, corrupt) for row in found}
        for run in claimed.runs:
            # a run of a removed task has none, also when a task of its id was added since
            run.task = None if run.id in detached else snapshots.get(run.task_id)
        yield from quarantine(d, corrupt)


def fire(d: Dialect, owner: str, decisions: list[FireDecision], lease: timedelta) -> Txn[list[FireResult]]:
    """Runs leased until the store's now + ``lease`` (see ``Store.fire``)."""
    until_us = (yield from d.clock()) + lease // _US
    until = from_us(until_us)
    rows = yield from fetch(d.sql.FIRE_STATE, d.array(sorted({dec.task_id for dec in decisions})))
    state = {row[0]: row for row in rows}
    wanted = [run_id_for(dec.task_id, t) for dec in decisions for t in dec.fire_times]
    existing = set((yield from fetch_ids(d.sql.EXISTING_RUNS, d.array(wanted)))) if wanted else set()
    # a run a removed task left under one of these ids runs that fire time as the new task's,
    # when the new task's claim is ours (else this call fires nothing of it)
    held = {
        run_id_for(dec.task_id, t)
        for dec in decisions
        if (row := state.get(dec.task_id)) is not None and row[4] == owner
        for t in dec.fire_times
    }
    adoptable = sorted(existing & held)
    adopted = set((yield from fetch_ids(d.sql.ADOPT_RUNS, d.array(adoptable)))) if adoptable else set()
    results: list[FireResult] = []
    created: list[Run] = []
    buffered: list[tuple[str, str, int, int, None, int, int]] = []
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
                if run_id in adopted:
                    adopted.discard(run_id)
                    running += 1
                continue
            admission = admit(decision.overlap, running, max_instances)
            if admission is Admission.SKIP:
                result.skipped.append(fire_time)
                continue
            existing.add(run_id)
            running += 1
            fire_us = to_us(fire_time)
            fire = from_us(fire_us)
            if admission is Admission.BUFFER:
                waiting = Run(id=run_id, task_id=task_id, fire_time=fire, lease_until=BUFFERED_UNTIL)
                result.buffered.append(waiting)
                buffered.append((run_id, task_id, fire_us, 1, None, _BUFFERED_US, 0))
                continue
            run = Run(id=run_id, task_id=task_id, fire_time=fire, owner=owner, lease_until=until)
            created.append(run)
            result.runs.append(run)
        # a user's change since the claim wins over the trigger's next fire time
        if version == decision.claimed_version:
            nrt = opt_us(decision.next_run_time)
        if running == 0 and nrt is None and quarantined is None:
            deletes.append((task_id,))
            result.removed = True
        else:
            updates.append((running, nrt, task_id))
        results.append(result)
    tokens = (yield from d.tokens(len(created))) if created else []
    inserts: list[tuple[str, str, int, int, str, int, int]] = []
    for run, token in zip(created, tokens, strict=True):
        run.fencing_token = token
        inserts.append((run.id, run.task_id, to_us(run.fire_time), 1, owner, until_us, token))
    yield from execute_many(d.sql.INSERT_RUN, inserts)
    yield from execute_many(d.sql.INSERT_RUN, buffered)
    yield from execute_many(d.sql.FIRED, updates)
    yield from execute_many(d.sql.DELETE_TASK, deletes)
    if any(nrt is not None for _, nrt, _ in updates):
        yield from notify()  # a task got its next run time: others may want to know
    return results


def complete(
    d: Dialect, owner: str, results: list[RunResult], history: HistorySettings | None = None
) -> Txn[set[str]]:
    """The run ids not completed (see ``Store.complete``): gone or held by another holder than
    ``owner`` under the results' fencing tokens; with ``history``, the entries of the runs
    completed are inserted in the same transaction."""
    rows = yield from fetch(d.sql.RUN_OWNERS, d.array(sorted({r.run.id for r in results})))
    runs = {row[0]: row for row in rows}
    lost: set[str] = set()
    retries: list[tuple[int, int, str]] = []
    done: list[str] = []
    ended: set[str] = set()  # tasks with a run gone for good: their next buffered run may start
    ends: list[int] = []  # the ends of those runs: the earliest is when a buffered run may start
    counts: dict[str, list[Any]] = {}  # task id -> [finished, runs, failures, last_run_at, outcome]
    held: list[tuple[RunResult, int]] = []  # the results completed here, and their ends
    for result in results:
        row = runs.pop(result.run.id, None)
        if row is None or row[2] != owner or row[3] != result.run.fencing_token:
            lost.update(_not_completed(row, result.run))
            continue
        finished_us = to_us(result.finished_at)  # once per result (3k instructions each)
        held.append((result, finished_us))
        detached = bool(row[4])  # its task was removed: a task of its id now is another one
        if result.dead_letter:
            task = None if detached else (yield from first(d, d.sql.GET_TASK, row[1]))
            yield from dead_letters.save(d, result, task)
        deferred = result.outcome == RunOutcome.DEFERRED
        if result.retry_at is not None:
            retries.append((0 if deferred else 1, to_us(result.retry_at), row[0]))
            if deferred or detached:
                continue  # a deferral counts nothing, nor does a run of a removed task
        else:
            done.append(row[0])
            if detached:
                continue
            ended.add(row[1])
            ends.append(finished_us)
        count = counts.setdefault(row[1], [0, 0, 0, None, None])
        count[0] += result.retry_at is None
        count[1] += 1
        count[2] += result.outcome == RunOutcome.FAILURE
        count[3:] = finished_us, result.outcome.value
    yield from execute_many(d.sql.RETRY_RUN, retries)
    if done:
        yield from execute(d.sql.DELETE_RUNS, d.array(done))
    # Counting locks the task rows, as fire does (FOR UPDATE) before it buffers a run: so the
    # promotion below, a later statement, sees every run a concurrent fire buffered.
    yield from execute_many(d.sql.COUNT_RUNS, [(*counts[task_id], task_id) for task_id in sorted(counts)])
    promoted: list[str] = []
    if ended:
        promoted = yield from fetch_ids(
            d.sql.PROMOTE_BUFFERED, min(ends), _BUFFERED_US, d.array(sorted(ended))
        )
    if counts:
        yield from execute(d.sql.REMOVE_FINISHED, d.array(counts))
    if history is not None:
        yield from execute_many(d.sql.INSERT_HISTORY, _entries(owner, held, history))
    if retries or promoted:
        yield from notify()
    return lost


def _not_completed(row: Sequence[Any] | None, run: Run) -> tuple[str, ...]:
    """``run``'s id if its row (not held under its token) is gone or another holder's; nothing
    when it waits under the token: re-queued by this holder's completion (a resend finds it so)."""
    return (run.id,) if row is None or row[2] is not None or row[3] != run.fencing_token else ()


def _entries(owner: str, held: list[tuple[RunResult, int]], history: HistorySettings) -> list[HistoryRow]:
    """The history rows of the runs completed (none for a deferred run): a plain success's
    (:data:`.SUCCESS_DOC`) written here in one formatting, any other by :func:`.history_row`."""
    owner_json = owner_member(owner)
    rows: list[HistoryRow] = []
    for result, ended in held:
        run = result.run
        token = run.fencing_token
        if (plain := plain_success(result, token, history, ended)) is not None:
            name, start_us = plain
            doc = SUCCESS_DOC % (name, (run.fire_time - EPOCH) // US, ended, owner_json, start_us)
            rows.append((f"{run.id}#1.{token}#success", run.task_id, ended, "success", doc.decode()))
            continue
        if (row := history_row(result, owner, history, ended)) is not None:
            rows.append(row)
    return rows


def extend(d: Dialect, owner: str, leases: Mapping[str, int], lease: timedelta) -> Txn[set[str]]:
    """The ids of the runs ``owner`` still holds under the given fencing tokens (their leases
    now end at the store's now + ``lease``)."""
    until_us = (yield from d.clock()) + lease // _US
    ids, tokens = d.array(leases), d.array(leases.values())
    held = yield from fetch_ids(d.sql.EXTEND_RUNS, until_us, owner, ids, tokens)
    return set(held)


def release(
    d: Dialect, owner: str, leases: Mapping[str, int], task_ids: list[str], now: datetime
) -> Txn[None]:
    ids, tokens = d.array(leases), d.array(leases.values())
    runs = yield from execute(d.sql.RELEASE_RUNS, to_us(now), owner, ids, tokens)
    tasks = yield from execute(d.sql.RELEASE_TASKS, owner, d.array(sorted(set(task_ids))))
    if runs + tasks > 0:
        yield from notify()


def enqueue(d: Dialect, task_id: str, fire_time: datetime, now: datetime) -> Txn[Run | None]:
    state = yield from fetch_one(d.sql.ENQUEUE_STATE, task_id)
    if state is None:
        raise TaskNotFoundError(task_id)
    run_id, fire_us = run_id_for(task_id, fire_time), to_us(fire_time)
    if (yield from fetch_one(d.sql.RUN_EXISTS, run_id)) is not None:
        if (yield from fetch_ids(d.sql.ADOPT_RUNS, d.array([run_id]))):
            yield from execute(d.sql.ADD_RUNNING, task_id)  # a removed task's run, now this one's
        return None
    if state[0] >= state[1]:
        return None
    yield from execute(d.sql.INSERT_RUN, run_id, task_id, fire_us, 1, None, to_us(now), 0)
    yield from execute(d.sql.ADD_RUNNING, task_id)
    yield from notify()
    return Run(id=run_id, task_id=task_id, fire_time=from_us(fire_us), lease_until=now)


def list_runs(d: Dialect, task_id: str | None) -> Txn[list[Run]]:
    if task_id is None:
        rows = yield from fetch(d.sql.LIST_RUNS)
    else:
        rows = yield from fetch(d.sql.LIST_TASK_RUNS, task_id)
    return [
        Run(
            id=i,
            task_id=t,
            fire_time=from_us(f),
            attempt=a,
            owner=o,
            lease_until=from_us(u),
            fencing_token=k,
            detached=bool(detached),
        )
        for i, t, f, a, o, u, k, detached in rows
    ]


def next_wakeup(d: Dialect, now: datetime | None) -> Txn[datetime | None]:
    """See ``Store.next_wakeup``; lease ends are moved to ``now``'s clock unless it is ``None``."""
    scheduled, leased = yield from earliest(d)
    times = [] if scheduled is None else [scheduled]
    if leased is not None:
        times.append(leased if now is None else now + (leased - from_us((yield from d.clock()))))
    return min(times) if times else None


def earliest(d: Dialect) -> Txn[tuple[datetime | None, datetime | None]]:
    """The earliest next run time or waiting run (the callers' clock), and the earliest
    claim's or run's lease end (the store's clock)."""
    row = yield from fetch_one(d.sql.NEXT_WAKEUP)
    assert row is not None
    due, waiting, claimed, leased = (None if value is None else int(value) for value in row)
    scheduled = min((t for t in (due, waiting) if t is not None), default=None)
    ends = min((t for t in (claimed, leased) if t is not None), default=None)
    return (
        None if scheduled is None else from_us(scheduled),
        None if ends is None else from_us(ends),
    )


def requeue_dead_letter(d: Dialect, letter_id: str, now: datetime) -> Txn[Run | None]:
    """Turn a dead letter back into a waiting run (see ``Store.requeue_dead_letter``)."""
    letter = yield from dead_letters.dead_letter(d, letter_id)
    if letter is None or (yield from fetch_one(d.sql.RUN_EXISTS, letter.id)) is not None:
        return None
    if (yield from fetch_one(d.sql.ENQUEUE_STATE, letter.task_id)) is None:
        if letter.task is None:
            return None
        yield from tasks.add(d, [letter.task.copy(next_run_time=None, running=0)], replace=False)
    run = yield from enqueue(d, letter.task_id, letter.fire_time, now)
    if run is not None:
        yield from dead_letters.remove(d, [letter_id])
    return run
