"""The in-process store: plain dicts and two heaps, for tests and local (non-durable) tasks.

Due tasks, claims, run leases and waiting runs live in heaps of ``(time, seq, id)`` with lazy
invalidation (:mod:`backbeat.stores._heaps`): rescheduling is one push and a claim of ``k``
items costs ``O(k log n)``. Claims and leases (store clock) and next run times and waiting runs
(caller's clock) are in separate heaps, as their times come from different clocks.
"""

from __future__ import annotations

import builtins
import copy
import heapq
from bisect import bisect_right, insort
from collections import Counter
from collections.abc import AsyncIterator, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import count
from typing import Any

from backbeat.abc import Store
from backbeat.errors import TaskExistsError, TaskNotFoundError
from backbeat.model.completed_history import HistoryRow, history_row
from backbeat.model.history import HistoryEntry, HistoryQuery, HistorySettings, refuse_ends_before_1970
from backbeat.model.overlap import BUFFERED_UNTIL, Admission, admit
from backbeat.model.records import (
    Claim,
    DeadLetter,
    FireDecision,
    FireResult,
    QuarantinedRecord,
    Run,
    RunOutcome,
    RunResult,
    StateRecord,
    Task,
    TaskFilter,
    run_id_for,
)
from backbeat.model.stored_text import refuse_unstorable_ids
from backbeat.stores._common import LeaseClock, Signal, check_changes, copy_run, copy_task, host_clock
from backbeat.stores._heaps import HeapEntry, compact, pop_first, top
from backbeat.stores._history import MemoryHistory


@dataclass(slots=True)
class _Slot:
    task: Task
    claimed_by: str | None = None
    claim_until: datetime | None = None
    seq: int = -1
    """The current heap entry of this task (-1: not in the heap)."""


class MemoryStore:
    """A store in this process's memory, shared by every engine that holds it (not durable).

    Records are Python objects, never encoded, so nothing is ever quarantined here.

    Args:
        lease_clock: the clock claims and run leases are judged by (default: this host's
            clock; every engine sharing this store runs in this process, so on this host).
            Tests pass a fake clock to move leases without waiting.
    """

    def __init__(self, *, lease_clock: LeaseClock = host_clock) -> None:
        self.lease_clock = lease_clock
        self._tasks: dict[str, _Slot] = {}
        self._tags: dict[str, set[str]] = {}
        self._sorted_ids: builtins.list[str] | None = None
        self._due: builtins.list[HeapEntry] = []
        """Unclaimed schedulable tasks by next run time (the caller's clock)."""
        self._claims: builtins.list[HeapEntry] = []
        """Claimed schedulable tasks by claim end (the lease clock)."""
        self._runs: dict[str, Run] = {}
        self._run_seq: dict[str, int] = {}
        self._leases: builtins.list[HeapEntry] = []
        """Runs with an owner by lease end (the lease clock)."""
        self._waiting: builtins.list[HeapEntry] = []
        """Runs without an owner by the time they become claimable (the caller's clock)."""
        self._buffered: dict[str, builtins.list[tuple[datetime, str]]] = {}
        """Each task's buffered runs (waiting until :data:`BUFFERED_UNTIL`) by fire time."""
        self._detached: set[str] = set()
        """Runs whose task was removed while they existed: they belong to that incarnation of
        the task, never to one added again under its id."""
        self._seq = count()
        self._fencing = count(1)
        """The fencing tokens handed out with leases: never reset, not even by ``clear``."""
        self._signal = Signal()
        self._dead_letters: dict[str, DeadLetter] = {}
        self._state: dict[str, StateRecord] = {}
        self._history = MemoryHistory()

    def __repr__(self) -> str:
        return f"MemoryStore({len(self._tasks)} tasks, {len(self._runs)} runs)"

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        pass

    # -- tasks -----------------------------------------------------------------------------

    async def add(self, tasks: Sequence[Task], *, replace: bool = False) -> None:
        refuse_unstorable_ids(tasks)
        if not replace:
            ids = Counter(task.id for task in tasks)
            existing = [i for i in ids if i in self._tasks] or [i for i, n in ids.items() if n > 1]
            if existing:
                raise TaskExistsError(existing)
        for given in tasks:
            task = copy_task(given)
            task.tags = tuple(task.tags)
            slot = self._tasks.get(task.id)
            if slot is None:
                slot = self._tasks[task.id] = _Slot(task)
                self._sorted_ids = None
            else:
                # a replacement keeps the live state (running, counters, a claim): it is a change
                old = slot.task
                task.version = max(old.version + 1, task.version)
                task.running, task.runs, task.failures = old.running, old.runs, old.failures
                task.last_run_at, task.last_outcome = old.last_run_at, old.last_outcome
                self._untag(old)
                slot.task = task
            for tag in task.tags:
                self._tags.setdefault(tag, set()).add(task.id)
            self._schedule(slot)
        self._signal.notify()

    async def get(self, task_id: str) -> Task | None:
        slot = self._tasks.get(task_id)
        return None if slot is None else copy_task(slot.task)

    async def list(
        self, filter: TaskFilter | None = None, *, cursor: str | None = None, limit: int | None = None
    ) -> tuple[builtins.list[Task], str | None]:
        if filter is not None and filter.tag is not None:
            ids = sorted(self._tags.get(filter.tag, ()))
        else:
            if self._sorted_ids is None:
                self._sorted_ids = sorted(self._tasks)
            ids = self._sorted_ids
        page: builtins.list[Task] = []
        for task_id in ids[bisect_right(ids, cursor) if cursor is not None else 0 :]:
            task = self._tasks[task_id].task
            if filter is None or filter.matches(task):
                if limit is not None and len(page) >= limit:
                    return page, page[-1].id if page else cursor
                page.append(copy_task(task))
        return page, None

    async def update(self, task_id: str, **changes: Any) -> Task:
        changes = check_changes(changes)
        slot = self._tasks.get(task_id)
        if slot is None:
            raise TaskNotFoundError(task_id)
        task = slot.task.copy(**changes)
        task.version += 1
        self._untag(slot.task)
        for tag in task.tags:
            self._tags.setdefault(tag, set()).add(task_id)
        slot.task = task
        self._schedule(slot)
        self._signal.notify()
        return copy_task(task)

    async def remove(self, task_ids: Collection[str]) -> builtins.list[str]:
        removed = [task_id for task_id in dict.fromkeys(task_ids) if task_id in self._tasks]
        self._remove(removed)
        for task_id in removed:  # their buffered runs leave with them (runs in flight finish)
            for _, run_id in self._buffered.pop(task_id, ()):
                del self._runs[run_id], self._run_seq[run_id]
        gone = set(removed)
        self._detached.update(run.id for run in self._runs.values() if run.task_id in gone)
        if removed:
            self._signal.notify()
        return removed

    async def remove_by_tag(self, tag: str) -> builtins.list[str]:
        return await self.remove(sorted(self._tags.get(tag, ())))

    async def clear(self) -> None:
        self._tasks.clear()
        self._tags.clear()
        self._sorted_ids = None
        self._due.clear()
        self._claims.clear()
        self._runs.clear()
        self._run_seq.clear()
        self._leases.clear()
        self._waiting.clear()
        self._buffered.clear()
        self._detached.clear()
        self._dead_letters.clear()
        self._state.clear()
        self._history.clear()
        self._signal.notify()

    # -- claims, runs and leases -----------------------------------------------------------

    async def claim_due(
        self, owner: str, *, now: datetime, lease: timedelta, limit: int, horizon: datetime | None = None
    ) -> Claim:
        store_now = self.lease_clock()
        until, horizon = store_now + lease, horizon or now
        claim = Claim()
        leased: builtins.list[str] = []
        runs = ((self._leases, store_now), (self._waiting, now))
        while len(leased) < limit and (run_id := pop_first(runs, self._run_seq.get)) is not None:
            run = self._runs[run_id]
            recovered = run.owner is not None
            if recovered:  # its owner let the lease expire: presumed dead, this is a new attempt
                run.attempt += 1
            run.owner, run.lease_until = owner, until
            run.fencing_token = next(self._fencing)
            leased.append(run_id)
            slot = None if run_id in self._detached else self._tasks.get(run.task_id)
            leased_run = copy_run(run)
            leased_run.task = None if slot is None else copy_task(slot.task)
            leased_run.recovered = recovered
            claim.runs.append(leased_run)
        # pushed once the loop is done, so a zero lease cannot make it take an item twice
        self._lease_runs(leased)

        taken: builtins.list[_Slot] = []
        room = limit - len(leased)
        tasks = ((self._claims, store_now), (self._due, horizon))
        while len(taken) < room and (task_id := pop_first(tasks, self._task_seq)) is not None:
            slot = self._tasks[task_id]
            task = slot.task
            if slot.claimed_by is not None:
                # a claim whose owner died between claim_due and fire
                slot.claimed_by = slot.claim_until = None
                if task.next_run_time is None or task.next_run_time > horizon:
                    self._schedule(slot)
                    continue
            slot.claimed_by, slot.claim_until = owner, until
            taken.append(slot)
            claim.tasks.append(copy_task(task))
        for slot in taken:
            self._schedule(slot)
        return claim

    async def fire(
        self, owner: str, decisions: Sequence[FireDecision], *, now: datetime, lease: timedelta
    ) -> builtins.list[FireResult]:
        until = self.lease_clock() + lease
        results: builtins.list[FireResult] = []
        created: builtins.list[str] = []
        rescheduled = False
        for decision in decisions:
            slot = self._tasks.get(decision.task_id)
            if slot is None or slot.claimed_by != owner:
                continue
            task = slot.task
            result = FireResult(task_id=task.id, runs=[])
            for fire_time in decision.fire_times:
                run_id = run_id_for(task.id, fire_time)
                if run_id in self._runs:
                    self._adopt(run_id, task)
                    continue
                admission = admit(decision.overlap, task.running, task.options.max_instances)
                if admission is Admission.SKIP:
                    result.skipped.append(fire_time)
                    continue
                run = Run(id=run_id, task_id=task.id, fire_time=fire_time.astimezone(UTC), lease_until=until)
                if admission is Admission.RUN:
                    run.owner, run.fencing_token = owner, next(self._fencing)
                    result.runs.append(copy_run(run))
                else:
                    run.lease_until = BUFFERED_UNTIL
                    insort(self._buffered.setdefault(task.id, []), (run.fire_time, run_id))
                    result.buffered.append(copy_run(run))
                self._runs[run_id] = run
                created.append(run_id)
                task.running += 1
            # a user's change since the claim wins over the trigger's next fire time
            if task.version == decision.claimed_version:
                task.next_run_time = decision.next_run_time
            slot.claimed_by = slot.claim_until = None
            if task.running == 0 and task.next_run_time is None:
                self._remove([task.id])
                result.removed = True
            else:
                rescheduled |= self._schedule(slot)
            results.append(result)
        self._lease_runs(created)
        if rescheduled:
            self._signal.notify()
        return results

    def _adopt(self, run_id: str, task: Task) -> None:
        """A run a removed task left under an id ``task`` fires again runs that fire time, now
        as ``task``'s run (counted, claimed with its snapshot)."""
        if run_id in self._detached:
            self._detached.discard(run_id)
            task.running += 1

    async def complete(
        self, owner: str, results: Sequence[RunResult], *, history: HistorySettings | None = None
    ) -> set[str]:
        lost: set[str] = set()
        retried: builtins.list[str] = []  # and buffered runs made claimable
        touched: dict[str, _Slot] = {}
        rows: builtins.list[HistoryRow] = []
        for result in results:
            run_id = result.run.id
            run = self._runs.get(run_id)
            token = result.run.fencing_token
            if run is None or not _holds(run, owner, token):
                # waiting under the token: re-queued by this holder's completion (a resend)
                if run is None or run.owner is not None or run.fencing_token != token:
                    lost.add(run_id)
                continue
            if history is not None and (row := history_row(result, owner, history)) is not None:
                rows.append(row)
            deferred = result.outcome == RunOutcome.DEFERRED
            detached = run_id in self._detached
            if result.retry_at is not None:
                run.attempt += 0 if deferred else 1
                run.owner, run.lease_until = None, result.retry_at
                retried.append(run_id)
            else:
                del self._runs[run_id], self._run_seq[run_id]
                if detached:
                    self._detached.discard(run_id)
                else:
                    retried += self._promote(run.task_id, result.finished_at)
            slot = None if detached else self._tasks.get(run.task_id)
            if result.dead_letter:
                snapshot = None if slot is None else copy_task(slot.task)
                self._dead_letters[run_id] = DeadLetter.of(result, snapshot)
            if slot is None or (deferred and result.retry_at is not None):
                # a removed task's runs finish with nothing to count (also when a task of the
                # same id was added since: it is another incarnation); a deferral counts nothing
                continue
            task = slot.task
            if result.retry_at is None and task.running > 0:
                task.running -= 1
            task.runs += 1
            if result.outcome == RunOutcome.FAILURE:
                task.failures += 1
            task.last_run_at, task.last_outcome = result.finished_at, result.outcome.value
            touched[task.id] = slot
        self._remove([i for i, s in touched.items() if self._finished(s)])
        self._lease_runs(retried)
        self._history.record_rows(rows)
        if retried:
            self._signal.notify()
        return lost

    async def extend(
        self, owner: str, leases: Mapping[str, int], *, now: datetime | None = None, lease: timedelta
    ) -> set[str]:
        held: set[str] = set()
        until = self.lease_clock() + lease
        for run_id, token in leases.items():
            run = self._runs.get(run_id)
            if run is not None and _holds(run, owner, token):
                run.lease_until = until
                held.add(run_id)
        self._lease_runs(held)
        return held

    async def release(
        self, owner: str, *, leases: Mapping[str, int], task_ids: Collection[str], now: datetime
    ) -> None:
        released: builtins.list[str] = []
        for run_id, token in leases.items():
            run = self._runs.get(run_id)
            if run is not None and _holds(run, owner, token):
                run.attempt += 1
                run.owner, run.lease_until = None, now
                released.append(run_id)
        self._lease_runs(released)
        changed = bool(released)
        for task_id in task_ids:
            slot = self._tasks.get(task_id)
            if slot is not None and slot.claimed_by == owner:
                slot.claimed_by = slot.claim_until = None
                self._schedule(slot)
                changed = True
        if changed:
            self._signal.notify()

    async def enqueue_run(self, task_id: str, *, fire_time: datetime, now: datetime) -> Run | None:
        slot = self._tasks.get(task_id)
        if slot is None:
            raise TaskNotFoundError(task_id)
        task = slot.task
        run_id = run_id_for(task_id, fire_time)
        if run_id in self._runs:
            self._adopt(run_id, task)
            return None
        if task.running >= task.options.max_instances:
            return None
        run = Run(id=run_id, task_id=task_id, fire_time=fire_time.astimezone(UTC), lease_until=now)
        self._runs[run_id] = run
        task.running += 1
        self._lease_runs([run_id])
        self._signal.notify()
        return copy_run(run)

    async def list_runs(self, task_id: str | None = None) -> builtins.list[Run]:
        runs = [copy_run(run) for run in self._runs.values() if task_id is None or run.task_id == task_id]
        for run in runs:
            run.detached = run.id in self._detached
        return runs

    async def next_wakeup(self, *, now: datetime | None = None) -> datetime | None:
        leased = [top(self._claims, self._task_seq), top(self._leases, self._run_seq.get)]
        ends = [end for end in leased if end is not None]
        times = [t for t in (top(self._due, self._task_seq), top(self._waiting, self._run_seq.get)) if t]
        if ends:
            # a lease end by the lease clock, told in the caller's
            times.append(min(ends) if now is None else now + (min(ends) - self.lease_clock()))
        return min(times) if times else None

    async def wakeups(self) -> AsyncIterator[None]:
        event = self._signal.subscribe()
        try:
            while True:
                await event.wait()
                event.clear()
                yield
        finally:
            self._signal.unsubscribe(event)

    async def quarantined(self) -> builtins.list[QuarantinedRecord]:
        return []

    async def quarantine(self, task_id: str, error: str) -> bool:
        return False  # a Python object is never unreadable: this store never refuses one

    # -- dead letters and shared state -----------------------------------------------------

    async def dead_letters(self, task_id: str | None = None) -> builtins.list[DeadLetter]:
        letters = [d for d in self._dead_letters.values() if task_id is None or d.task_id == task_id]
        return [copy.deepcopy(d) for d in sorted(letters, key=lambda d: (d.failed_at, d.id))]

    async def remove_dead_letters(self, ids: Collection[str]) -> builtins.list[str]:
        return [i for i in dict.fromkeys(ids) if self._dead_letters.pop(i, None) is not None]

    async def requeue_dead_letter(self, dead_letter_id: str, *, now: datetime) -> Run | None:
        letter = self._dead_letters.get(dead_letter_id)
        if letter is None or letter.id in self._runs:
            return None
        slot = self._tasks.get(letter.task_id)
        if slot is None:
            if letter.task is None:
                return None
            task = copy_task(letter.task)
            task.next_run_time, task.running = None, 0
            await self.add([task])
            slot = self._tasks[task.id]
        if slot.task.running >= slot.task.options.max_instances:
            return None
        del self._dead_letters[dead_letter_id]
        run = Run(id=letter.id, task_id=letter.task_id, fire_time=letter.fire_time, lease_until=now)
        self._runs[run.id] = run
        slot.task.running += 1
        self._lease_runs([run.id])
        self._signal.notify()
        return copy_run(run)

    async def get_state(self, key: str) -> StateRecord | None:
        record = self._state.get(key)
        return None if record is None else StateRecord(copy.deepcopy(record.value), record.version)

    async def put_state(self, key: str, value: dict[str, Any], *, version: int, wake: bool = False) -> bool:
        record = self._state.get(key)
        if (record.version if record is not None else 0) != version:
            return False
        self._state[key] = StateRecord(copy.deepcopy(value), version + 1)
        if wake:
            self._signal.notify()
        return True

    # -- history ---------------------------------------------------------------------------

    async def record_history(self, entries: Sequence[HistoryEntry]) -> None:
        refuse_ends_before_1970(entries)
        self._history.record([copy.copy(entry) for entry in entries])

    async def prune_history(self, task_ids: Collection[str], *, before: datetime, keep: int) -> int:
        return self._history.prune(task_ids, before=before, keep=keep)

    async def run_history(self, query: HistoryQuery) -> tuple[builtins.list[HistoryEntry], str | None]:
        entries, cursor = self._history.query(query)
        return [copy.copy(entry) for entry in entries], cursor

    # -- internals -------------------------------------------------------------------------

    def _promote(self, task_id: str, now: datetime) -> builtins.list[str]:
        """Make the earliest buffered run of a task claimable from ``now``; its id, if any."""
        buffered = self._buffered.get(task_id)
        if not buffered:
            return []
        _, run_id = buffered.pop(0)
        if not buffered:
            del self._buffered[task_id]
        self._runs[run_id].lease_until = now
        return [run_id]

    def _schedule(self, slot: _Slot) -> bool:
        """Put a task in the claims heap at its claim end, or in the due heap at its next run
        time; whether it is in one."""
        task = slot.task
        slot.seq = -1
        if task.paused or task.orphaned is not None or task.next_run_time is None:
            return False
        slot.seq = seq = next(self._seq)
        if slot.claimed_by is not None:
            assert slot.claim_until is not None
            heapq.heappush(self._claims, (slot.claim_until, seq, task.id))
        else:
            heapq.heappush(self._due, (task.next_run_time, seq, task.id))
        if len(self._due) + len(self._claims) > 2 * len(self._tasks) + 1024:
            self._due = compact(self._due, self._task_seq)
            self._claims = compact(self._claims, self._task_seq)
        return True

    def _lease_runs(self, run_ids: Iterable[str]) -> None:
        for run_id in run_ids:
            self._run_seq[run_id] = seq = next(self._seq)
            run = self._runs[run_id]
            heap = self._leases if run.owner is not None else self._waiting
            heapq.heappush(heap, (run.lease_until, seq, run_id))
        if len(self._leases) + len(self._waiting) > 2 * len(self._runs) + 1024:
            self._leases = compact(self._leases, self._run_seq.get)
            self._waiting = compact(self._waiting, self._run_seq.get)

    def _task_seq(self, task_id: str) -> int | None:
        slot = self._tasks.get(task_id)
        return None if slot is None else slot.seq

    @staticmethod
    def _finished(slot: _Slot) -> bool:
        task = slot.task
        return task.running == 0 and task.next_run_time is None and slot.claimed_by is None

    def _untag(self, task: Task) -> None:
        for tag in task.tags:
            ids = self._tags.get(tag)
            if ids is not None:
                ids.discard(task.id)
                if not ids:
                    del self._tags[tag]

    def _remove(self, task_ids: Iterable[str]) -> None:
        for task_id in task_ids:
            slot = self._tasks.pop(task_id)
            self._untag(slot.task)
            self._sorted_ids = None


def _holds(run: Run, owner: str, token: int) -> bool:
    """Whether ``owner`` holds ``run`` under the fencing token ``token``."""
    return run.owner == owner and run.fencing_token == token


_: type[Store] = MemoryStore
"""mypy checks here that ``MemoryStore`` satisfies the ``Store`` protocol."""


__all__ = ["MemoryStore", "check_changes"]  # check_changes: re-exported for the Redis store
