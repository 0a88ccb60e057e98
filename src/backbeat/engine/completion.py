"""The results of the runs that ended here, until the store takes them: sent in batches by the
complete loop, one at a time after a refused batch, and set aside when the store keeps refusing
one of them."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from backbeat.abc import Store
from backbeat.engine.fencing import LeaseDeadlines
from backbeat.engine.history import HistoryRecorder
from backbeat.errors import StoreError, StoreUnavailableError
from backbeat.model.events import EventHub, EventKind, SchedulerEvent
from backbeat.model.records import RunResult

log = logging.getLogger("backbeat.engine")

POISON_REFUSALS = 3
"""Times the store may refuse to complete one run's result on its own, while it completes
others, before that result is set aside (see :meth:`Completions._one_by_one`)..."""
POISON_SPAN = timedelta(seconds=2)
"""... over this long at least (by the scheduler's clock): a refusal that passes (a deadlock,
a cancelled statement) is not taken for the result's."""
_FIRST_BACKOFF = 0.05


class Completions:
    """The results waiting for the store (:attr:`pending`, their leases renewed with the runs
    going), sent by :meth:`loop` whenever :attr:`flush` is set.

    A batch the store refuses while it answers is sent again one result at a time; a store
    that cannot be reached is retried with back-off (``sleep``, up to ``retry_max`` seconds).
    ``completed`` is called after a drain that completed something, when nothing waits: the
    capacity it freed.
    """

    def __init__(
        self,
        store: Store,
        owner: str,
        history: HistoryRecorder,
        deadlines: LeaseDeadlines,
        events: EventHub,
        flush: asyncio.Event,
        *,
        clock: Callable[[], datetime],
        sleep: Callable[[float], Awaitable[object]],
        retry_max: float,
        completed: Callable[[], None],
        store_error: Callable[[BaseException, str], None],
    ) -> None:
        self.store = store
        self.owner = owner
        self.history = history
        self.deadlines = deadlines
        self.events = events
        self.flush = flush
        self.pending: dict[str, RunResult] = {}
        """Run id -> its result, until the store takes it (or it is set aside)."""
        self._clock = clock
        self._sleep = sleep
        self._retry_max = retry_max
        self._completed = completed
        self._store_error = store_error
        self._lock = asyncio.Lock()
        self._refusals: dict[str, tuple[int, datetime]] = {}
        """Run id -> times its result was refused on its own while others completed, and when
        first."""

    def add(self, result: RunResult) -> None:
        """A run ended here: its result waits for the next drain."""
        self.pending[result.run.id] = result
        self.flush.set()

    async def loop(self) -> None:
        """Drain whenever :attr:`flush` is set, for ever."""
        backoff = _FIRST_BACKOFF
        while True:
            await self.flush.wait()
            self.flush.clear()
            try:
                await self.drain()
                backoff = _FIRST_BACKOFF
            except Exception as exc:  # a bug must not end the loop: every later run would stay open
                log.exception("unexpected error while completing runs (will retry)")
                self.events.emit(SchedulerEvent(kind=EventKind.STORE_ERROR, error=exc))
                await asyncio.sleep(backoff * (1 + random.random()))
                backoff = min(backoff * 2, self._retry_max)
                self.flush.set()

    async def drain(self) -> None:
        """Complete every pending result (retrying until the store takes them), then flush the
        history the recorder holds."""
        # stop() drains too, while the complete loop may be draining: one batch at a time,
        # or a run would be completed twice (and reported as taken over).
        async with self._lock:
            await self._drain()

    async def last(self, within: float) -> None:
        """:meth:`drain` for ``within`` seconds at most (a lease, at shutdown): a store gone then
        must not hold the process for ever, and past a lease without it another process may have
        taken the runs over anyway. What is not stored is left to the leases: those runs are
        taken over as lost ones."""
        self.flush.set()
        try:
            async with asyncio.timeout(within):
                await self.drain()
        except TimeoutError:
            log.warning(
                "shutdown: the store did not take the completions of %d runs within a lease (%g s); "
                "they are taken over as lost runs once their leases end",
                len(self.pending),
                within,
            )

    async def _drain(self) -> None:
        backoff = _FIRST_BACKOFF
        drained = False
        while self.pending:
            batch = list(self.pending.values())
            try:
                await self._complete(batch)
                drained, backoff = True, _FIRST_BACKOFF
                continue
            except (StoreUnavailableError, OSError) as exc:
                self._store_error(exc, "completing runs")
            except Exception as exc:  # refused, not unreachable: maybe because of one result
                if isinstance(exc, StoreError):
                    self._store_error(exc, "completing runs")
                else:
                    log.exception("unexpected error while completing runs (will retry)")
                    self.events.emit(SchedulerEvent(kind=EventKind.STORE_ERROR, error=exc))
                if len(batch) > 1 and await self._one_by_one(batch):
                    drained, backoff = True, _FIRST_BACKOFF
                    continue
            await self._sleep(backoff * (1 + random.random()))
            backoff = min(backoff * 2, self._retry_max)
        # only completions free capacity: the history's flush timer, which brings the complete
        # loop here with nothing to complete, must not send the claim loop to the store
        if drained and not self.pending:
            self._completed()
        await self.history.flush()  # after the wake-up: recording never delays the next claim

    async def _complete(self, batch: list[RunResult]) -> None:
        lost = await self.store.complete(self.owner, batch, history=self.history.completions)
        pending, refusals = self.pending, self._refusals
        for result in batch:
            pending.pop(result.run.id, None)
            if refusals:  # most often none
                refusals.pop(result.run.id, None)
        self.deadlines.forget([result.run.id for result in batch])
        self.history.completed(batch, lost)
        if lost:
            log.warning("runs %s finished after their lease passed to another instance", sorted(lost))

    async def _one_by_one(self, batch: list[RunResult]) -> bool:
        """Complete the results of a refused batch one at a time, so that one the store cannot
        take (a record it cannot read, a value it cannot encode) holds back no other; whether any
        completed. A result refused on its own while another completed is refused
        :data:`POISON_REFUSALS` times over :data:`POISON_SPAN` at most, then set aside: its
        lease is no longer renewed, so it runs out and the run is taken over as a lost one. A
        refusal while nothing completes is the store's, not the result's: it counts nothing."""
        refused: list[tuple[RunResult, Exception]] = []
        completed = False
        for result in batch:
            if result.run.id not in self.pending:
                continue
            try:
                await self._complete([result])
                completed = True
            except (StoreUnavailableError, OSError) as exc:
                self._store_error(exc, "completing runs")
                return completed
            except Exception as exc:
                refused.append((result, exc))
        if completed:
            for result, error in refused:
                self._refused(result, error)
        return completed

    def _refused(self, result: RunResult, exc: Exception) -> None:
        run_id = result.run.id
        now = self._clock()
        refusals, first = self._refusals.get(run_id, (0, now))
        refusals += 1
        self._refusals[run_id] = (refusals, first)
        if refusals < POISON_REFUSALS or now - first < POISON_SPAN:
            return
        del self._refusals[run_id]
        self.pending.pop(run_id, None)
        self.deadlines.forget([run_id])
        log.error(
            "the store refused to complete run %s (%s) %d times while it completed others: "
            "set aside, its lease runs out and the run is taken over as a lost one: %r",
            run_id,
            result.outcome.value,
            refusals,
            exc,
        )
        self.events.emit(
            SchedulerEvent(
                kind=EventKind.STORE_ERROR,
                task_id=result.run.task_id,
                task_name=result.run.task.name if result.run.task else None,
                run_id=run_id,
                fire_time=result.run.fire_time,
                error=exc,
            )
        )
