"""Recording run history. A run's completion records its entry in the same store call
(``Store.complete(..., history=...)``); everything else (missed, skipped and coalesced fire
times, lost leases, runs the completion found no longer theirs, runs set aside) goes to a
:class:`HistoryRecorder`, which writes them to the store in batches after each completion batch
(at most half a second later). The recorder also prunes a task's history every
``per_task // 10`` of its entries, of either kind, and old entries of any task once a minute, or
at each flush while they are found faster than that removes them."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from datetime import datetime, timedelta

from backbeat.abc import Store
from backbeat.errors import StoreError
from backbeat.model.completed_history import error_of, outcome_of
from backbeat.model.history import EPOCH, PRUNE_BATCH, HistoryEntry, HistoryOutcome, HistorySettings, entry_id
from backbeat.model.records import Run, RunOutcome, RunResult, Task, run_id_for

log = logging.getLogger("backbeat.engine")

AGE_PRUNE_INTERVAL = timedelta(minutes=1)
"""How often old entries of any task (tasks that stopped running) are looked for, while each
look finds fewer than :data:`.PRUNE_BATCH` (more: again at the next flush)."""
AGE_PRUNE_CALLS = 4
"""``prune_history`` calls one flush makes at most while each removes :data:`.PRUNE_BATCH`: an
engine keeps up with entries reaching their age at up to 8,000 a second (a flush every half
second under load: arithmetic, not measured), where a call a minute kept up with 17."""
FLUSH_BATCH = 1000
"""Entries collected that are written at once, without waiting for :data:`FLUSH_DELAY`."""
PRUNE_COUNTS = 10_000
"""Tasks whose entries since their last pruning are counted at most (the counts of the tasks
that ran least are dropped beyond it: their entries are pruned by age, or later)."""
STORE_ERROR_TYPE = f"{StoreError.__module__}.{StoreError.__qualname__}"
"""The error type of a run the store refused to complete with its result."""
FLUSH_DELAY = 0.5
"""Seconds an entry may wait to be written: fewer, larger writes cost a fire far less."""


class HistoryRecorder:
    """Collects one engine's history entries not recorded by completions and writes them to
    ``store`` when flushed (nothing at all with ``settings=None``: history turned off): at most
    :data:`FLUSH_DELAY` after the first entry waiting or completion counted (``wake`` is called
    then, and the engine flushes), at once when :data:`FLUSH_BATCH` are waiting, and when the
    engine stops.

    Recording is best effort: a store error is logged and the batch dropped, so history can
    never hold up or fail a run's completion.
    """

    def __init__(
        self,
        store: Store,
        settings: HistorySettings | None,
        *,
        owner: str,
        clock: Callable[[], datetime],
        wake: Callable[[], None] = lambda: None,
        by_completions: bool = True,
    ) -> None:
        self.store = store
        self.enabled = settings is not None
        self.by_completions = by_completions
        """The engine's completions record their runs (``store`` is the one they go to)."""
        self.settings = settings or HistorySettings()
        self.owner = owner
        self.clock = clock
        self._wake = wake
        self._pending: list[HistoryEntry] = []
        self._since_prune: Counter[str] = Counter()
        self._prune_due: set[str] = set()
        """Tasks whose count reached ``prune_every``: found as they are counted, so a flush
        never scans the counts of every task."""
        self._next_age_prune: datetime | None = None
        self._due: float | None = None
        """When (``time.monotonic``) the oldest waiting entry should be written."""

    @property
    def completions(self) -> HistorySettings | None:
        """What ``Store.complete`` records with each completion (``None``: history off)."""
        return self.settings if self.enabled and self.by_completions else None

    def completed(self, results: Sequence[RunResult], lost: Collection[str]) -> None:
        """``Store.complete`` took ``results`` (recording the entries of those it completed):
        count those entries for pruning, and record here the runs it did not complete (their
        lease had passed on, or a completion sent again found them completed: recorded once),
        or every run when the completions go to another store than the history."""
        if not self.enabled:
            return
        since_prune, every, success = self._since_prune, self.settings.prune_every, RunOutcome.SUCCESS
        if self.by_completions and not lost:
            # most batches: the store recorded every entry; counted in C (Counter.update), and a
            # task due when its count reached prune_every (>=: a batch may hold several of its runs)
            counted = [r.run.task_id for r in results if r.outcome is success or outcome_of(r) is not None]
            since_prune.update(counted)
            self._prune_due.update([task_id for task_id in counted if since_prune[task_id] >= every])
            self._arm()
            return
        by_completions = self.by_completions
        for result in results:
            run = result.run
            if not by_completions or run.id in lost:
                self._finished(result)
            elif result.outcome is success or outcome_of(result) is not None:
                # .get: Counter's += on a task not counted yet calls its Python __missing__
                count = since_prune.get(run.task_id, 0) + 1
                since_prune[run.task_id] = count
                if count >= every:
                    self._prune_due.add(run.task_id)
        self._arm()

    def _finished(self, result: RunResult) -> None:
        run = result.run
        outcome = outcome_of(result)
        if outcome is None:
            return
        if result.error is None and result.error_type is None:
            self._add(run.task_id, run.task, run, outcome, result.finished_at, result.started_at)
        else:
            error_type, error = error_of(result, self.settings.message_limit)
            self._add(
                run.task_id, run.task, run, outcome, result.finished_at, result.started_at, error_type, error
            )

    def set_aside(self, result: RunResult, why: str) -> None:
        """``result``'s run ran, but the store refused its completion with any result and it was
        set aside: recorded as a failure whose error is ``why``, by the history's own write
        (no completion will record it). A deferral set aside records nothing: its run did not
        run (it is kept for later, as a deferral's completion would have kept it)."""
        if not self.enabled or outcome_of(result) is None:
            return
        run = result.run
        error_type, error = error_of(
            dataclasses.replace(result, error=why, error_type=STORE_ERROR_TYPE), self.settings.message_limit
        )
        outcome, ended, started = HistoryOutcome.FAILURE, result.finished_at, result.started_at
        self._add(run.task_id, run.task, run, outcome, ended, started, error_type, error)

    def lost_lease(self, run: Run, task: Task | None, started: datetime | None) -> None:
        """``run`` (started at ``started``, if it did) ended without completing: its lease was lost."""
        if not self.enabled:
            return
        self._add(run.task_id, task, run, HistoryOutcome.LOST_LEASE, self.clock(), started)

    def missed(self, task: Task, fire_time: datetime, *, late_by: timedelta) -> None:
        """A fire time older than the task's catch-up window."""
        self._not_run(task, fire_time, HistoryOutcome.MISSED, f"late by {late_by}")

    def skipped(self, task: Task, fire_time: datetime, *, why: str) -> None:
        """A fire time the task's overlap policy refused (another run of it was going)."""
        self._not_run(task, fire_time, HistoryOutcome.SKIPPED, why)

    def coalesced(self, task: Task, fire_time: datetime, *, into: datetime) -> None:
        """A fire time folded into the run of a later one (``coalesce=True``)."""
        self._not_run(task, fire_time, HistoryOutcome.COALESCED, f"run at {into}")

    def _not_run(self, task: Task, fire_time: datetime, outcome: HistoryOutcome, why: str) -> None:
        if not self.enabled:
            return
        run = Run(
            id=run_id_for(task.id, fire_time), task_id=task.id, fire_time=fire_time, lease_until=fire_time
        )
        self._add(task.id, task, run, outcome, self.clock(), error=why)

    def _add(
        self,
        task_id: str,
        task: Task | None,
        run: Run,
        outcome: HistoryOutcome,
        ended: datetime,
        started: datetime | None = None,
        error_type: str | None = None,
        error: str | None = None,
    ) -> None:
        if ended < EPOCH:
            # every store refuses a batch holding one (refuse_ends_before_1970): only it is left out
            log.warning("history entry of run %r not recorded: it ended at %s, before 1970", run.id, ended)
            return
        if error is not None and not error.isascii():
            try:
                error.encode()
            except UnicodeEncodeError:
                # an OSError's file name kept by surrogateescape: no store's encoder takes it, and
                # a batch holding it would be lost whole (a completion leaves such an entry out too)
                log.warning("history entry of run %r not recorded: its error holds a lone surrogate", run.id)
                return
        self._arm()
        args = None
        if self.settings.record_args and task is not None:
            args = {"args": task.args, "kwargs": task.kwargs, "data": task.data}
        self._pending.append(
            HistoryEntry(
                id=entry_id(run.id, run.attempt, outcome, run.fencing_token),
                task_id=task_id,
                task_name=task.name if task is not None else task_id,
                run_id=run.id,
                fire_time=run.fire_time,
                started_at=started,
                ended_at=ended,
                outcome=outcome,
                attempt=run.attempt,
                error_type=error_type,
                error=error,
                owner=self.owner,
                args=args,
            )
        )

    def _arm(self) -> None:
        """Have the engine flush within :data:`FLUSH_DELAY` (entries to write, or counts that
        may make a task due for pruning)."""
        if self._due is None:
            self._due = time.monotonic() + FLUSH_DELAY
            asyncio.get_running_loop().call_later(FLUSH_DELAY, self._wake)

    async def flush(self, *, force: bool = False) -> None:
        """Write what was collected if it is time (``force``: now), then prune the tasks that
        are due for it."""
        if not self.enabled or self._due is None:
            return
        if not force and len(self._pending) < FLUSH_BATCH and time.monotonic() < self._due:
            return
        entries, self._pending, self._due = self._pending, [], None
        since_prune = self._since_prune
        if entries:
            try:
                await self.store.record_history(entries)
            except (StoreError, OSError) as exc:
                log.warning("run history of %d runs not recorded: %r", len(entries), exc)
                return
            every = self.settings.prune_every
            for entry in entries:
                since_prune[entry.task_id] += 1
                if since_prune[entry.task_id] == every:
                    self._prune_due.add(entry.task_id)
        if len(since_prune) > PRUNE_COUNTS:
            # one-shot tasks would fill it for ever: keep the tasks that ran most
            every = self.settings.prune_every
            self._since_prune = Counter({t: n for t, n in since_prune.items() if 2 * n >= every})
        await self._prune()

    async def _prune(self) -> None:
        now = self.clock()
        due = sorted(self._prune_due)
        age_due = self._next_age_prune is None or now >= self._next_age_prune
        if not due and not age_due:
            return
        before, keep = now - self.settings.retention, self.settings.per_task
        try:
            removed = await self.store.prune_history(due if due else (), before=before, keep=keep)
        except (StoreError, OSError) as exc:
            log.warning("run history not pruned (will try again): %r", exc)
            return
        for task_id in due:
            self._since_prune.pop(task_id, None)
        self._prune_due.difference_update(due)
        total, calls = removed, 1
        try:
            # a full batch may have left old entries behind: they reach their age as fast as
            # runs end, which one call a minute would never catch up with
            while removed >= PRUNE_BATCH and calls < AGE_PRUNE_CALLS:
                removed = await self.store.prune_history((), before=before, keep=keep)
                total, calls = total + removed, calls + 1
        except (StoreError, OSError) as exc:
            log.warning("old run history not all pruned (will try again): %r", exc)
        self._next_age_prune = now if removed >= PRUNE_BATCH else now + AGE_PRUNE_INTERVAL
        log.debug("pruned %d run history entries", total)
