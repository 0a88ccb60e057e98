"""The results of the runs that ended here, until the store takes them: sent in batches by the
complete loop, one at a time after a refused batch; one the store keeps refusing is completed as
a bare failure, and if that is refused too, its task is quarantined and the result set aside."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from backbeat.abc import Store
from backbeat.engine.fencing import LeaseDeadlines
from backbeat.engine.history import STORE_ERROR_TYPE, HistoryRecorder
from backbeat.errors import StoreError, StoreUnavailableError
from backbeat.model.events import EventHub, EventKind, SchedulerEvent
from backbeat.model.records import Run, RunOutcome, RunResult

log = logging.getLogger("backbeat.engine")

POISON_REFUSALS = 3
"""Times the store may refuse to complete one run's result on its own, while it completes
others or answers a probe, before that result is stripped, and the stripped one before it is
set aside (see :meth:`Completions._one_by_one`), once it completed another result meanwhile..."""
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
        lease: timedelta,
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
        self._lease = lease
        self._retry_max = retry_max
        self._completed = completed
        self._store_error = store_error
        self._lock = asyncio.Lock()
        self._refusals: dict[str, tuple[int, datetime, bool]] = {}
        """Run id -> times its result was refused on its own (while others completed or the
        store answered a probe), when first, and whether another result completed in a pass
        that counted one."""
        self._stripped: set[str] = set()
        """Runs whose result was replaced by :func:`stripped` (refused on its own already)."""

    def add(self, result: RunResult) -> None:
        """A run ended here: its result waits for the next drain."""
        self.pending[result.run.id] = result
        self.flush.set()

    async def loop(self) -> None:
        """Drain whenever :attr:`flush` is set, for ever."""
        backoff = _FIRST_BACKOFF
        while True:
            await self.flush.wait()
            # One turn first: the claim loop the ended runs made room for sends its next claim
            # and fire before this completion, so the store works on the completion while the
            # client decodes the fire's reply and runs its batch (a completion starts nothing;
            # a fire's reply does). Sent first, it held the fire back by its whole script.
            await asyncio.sleep(0)
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
                if await self._one_by_one(batch, exc):
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
        if lost:
            # A run this process surely still holds no one else can have completed: gone, it was
            # completed here (a completion sent again after a lost reply). Else it is a late
            # finish of a run taken over: warned about, its entry recorded here.
            lost = {run_id for run_id in lost if not self.deadlines.holds(run_id)}
        pending, refusals, stripped = self.pending, self._refusals, self._stripped
        for result in batch:
            pending.pop(result.run.id, None)
            if refusals:  # most often none
                refusals.pop(result.run.id, None)
            if stripped:
                stripped.discard(result.run.id)
        self.deadlines.forget([result.run.id for result in batch])
        self.history.completed(batch, lost)
        if lost:
            log.warning("runs %s finished after their lease passed to another instance", sorted(lost))

    async def _one_by_one(self, batch: list[RunResult], error: Exception) -> bool:
        """Complete the results of a batch refused with ``error`` one at a time, so that one the
        store cannot take (a record it cannot read, a value it cannot encode) holds back no
        other; whether any completed. A result refused on its own is refused
        :data:`POISON_REFUSALS` times over :data:`POISON_SPAN` at most, then replaced by a bare
        failure (:func:`stripped`); refused as often again, the store cannot complete the run
        with any result: its task is quarantined and the result set aside (:meth:`_give_up`).

        A refusal counts when another result completed, or, nothing completing (a quiet
        worker), when the store answers a probe right after it (:meth:`_answers`); else it is
        the store's trouble (down, refusing writes, refusing every completion), not the
        result's, and counts nothing. Either step also waits until another result completed
        in a pass that counted a refusal: a probe proves the store up, not that it completes
        real results (a history table gone, a script failing on every real record), and such
        a store would otherwise strip and quarantine every task a fleet runs."""
        refused: list[tuple[RunResult, Exception]] = []
        completed = False
        if len(batch) == 1:
            refused.append((batch[0], error))  # refused on its own already
        else:
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
        if not refused:
            return completed
        answered = {result.run.id for result, _ in refused} if completed else await self._answers(refused)
        for result, refusal in refused:
            if result.run.id in answered:
                await self._refused(result, refusal, witnessed=completed)
        return completed

    async def _answers(self, refused: list[tuple[RunResult, Exception]]) -> set[str]:
        """Probe the store after refusals while nothing completed: the runs of ``refused`` whose
        refusal is their own. The store must complete a known-good result (of a run that does
        not exist: the completion path works), then renew the refused runs' own leases (it
        writes, and their run records are fine); the runs it renewed. Any error: none."""
        run = refused[0][0].run
        # no fire time spells "probe": no run has this id (and its task's shard is the run's)
        nothing = Run(
            id=f"{run.task_id}@probe",
            task_id=run.task_id,
            fire_time=run.fire_time,
            lease_until=run.lease_until,
        )
        known_good = RunResult(run=nothing, outcome=RunOutcome.SUCCESS, finished_at=self._clock())
        leases = {result.run.id: result.run.fencing_token for result, _ in refused}
        try:
            await self.store.complete(self.owner, [known_good], history=None)
            sent = self.deadlines.now()
            held = await self.store.extend(self.owner, leases, now=self._clock(), lease=self._lease)
        except Exception as exc:  # the store's trouble, whatever it is: no refusal counts
            log.debug("store probe after a refused completion failed: %r", exc)
            return set()
        self.deadlines.granted(held, sent)
        return held

    async def _refused(self, result: RunResult, exc: Exception, *, witnessed: bool) -> None:
        """Count a refusal of ``result`` on its own (``witnessed``: while another result
        completed); past the poison rule, complete the run as failed without what the store
        refuses (:func:`stripped`) and, that refused too, give it up (:meth:`_give_up`)."""
        run_id = result.run.id
        now = self._clock()
        refusals, first, seen = self._refusals.get(run_id, (0, now, False))
        refusals, seen = refusals + 1, seen or witnessed
        self._refusals[run_id] = (refusals, first, seen)
        if refusals < POISON_REFUSALS or now - first < POISON_SPAN or not seen:
            return
        del self._refusals[run_id]
        if run_id in self._stripped:
            await self._give_up(result, exc, refusals)
            return
        self._stripped.add(run_id)
        self.pending[run_id] = bare = stripped(result, exc)
        log.error(
            "the store refused to complete run %s (%s) %d times while it took others or answered "
            "a probe: completed as %s without its result (no error text or traceback): %r",
            run_id,
            result.outcome.value,
            refusals,
            bare.outcome.value,
            exc,
        )
        self._emit_error(result, exc)

    async def _give_up(self, result: RunResult, exc: Exception, refusals: int) -> None:
        """The store refuses the run's completion whatever the result: the records it keeps for
        the run's task are what it cannot take. Quarantine the task (kept as it is, out of
        claims), so no worker runs it again for ever, and set the result aside: its lease is no
        longer renewed, so it runs out, and whoever takes the run over finds its task
        quarantined and keeps the run without running it (until the record is repaired).

        A store unreachable for the quarantine keeps the result here (its lease renewed): set
        aside, the run would be taken over and run again by a worker that finds its task
        schedulable; refused as often again, it is given up again."""
        run = result.run
        why = f"the store refused to complete run {run.id} with any result: {_said(exc)}"
        try:
            quarantined = await self.store.quarantine(run.task_id, why)
        except (StoreUnavailableError, OSError) as error:
            self._store_error(error, "quarantining a task")
            return
        except Exception as error:  # refused: the next worker to take the run over tries again
            self._store_error(error, "quarantining a task")
            quarantined = False
        self._stripped.discard(run.id)
        self.pending.pop(run.id, None)
        self.deadlines.forget([run.id])
        self.history.set_aside(result, why)
        log.error(
            "the store refused to complete run %s %d times more, stripped of its result: %s, "
            "set aside (its lease runs out and the run is taken over): %r",
            run.id,
            refusals,
            f"task {run.task_id} quarantined" if quarantined else f"task {run.task_id} not quarantined",
            exc,
        )
        self._emit_error(result, exc)

    def _emit_error(self, result: RunResult, exc: Exception) -> None:
        self.events.emit(
            SchedulerEvent(
                kind=EventKind.STORE_ERROR,
                task_id=result.run.task_id,
                task_name=result.run.task.name if result.run.task else None,
                run_id=result.run.id,
                fire_time=result.run.fire_time,
                error=exc,
            )
        )


_SAID_LIMIT = 300
"""Characters of a store's refusal kept in a stripped result (its message may quote the value
it refused)."""


def _said(exc: BaseException) -> str:
    """What the store said, short and in ASCII: it may quote the very value it refused."""
    said = ascii(f"{type(exc).__name__}: {exc}")[1:-1]
    return said if len(said) <= _SAID_LIMIT else said[: _SAID_LIMIT - 3] + "..."


def stripped(result: RunResult, exc: Exception) -> RunResult:
    """``result`` as a failure the store can take: none of its error text, traceback or retry
    (the likely part it refused), the refusal as its error; dead-lettered when it would have
    been, or retried (so the fire time can be run again by hand). A deferral (a run kept
    unrun: its task quarantined, its circuit breaker open) stays one, its fire time kept."""
    if result.outcome is RunOutcome.DEFERRED and result.retry_at is not None:
        return RunResult(
            run=result.run,
            outcome=RunOutcome.DEFERRED,
            finished_at=result.finished_at,
            error=f"StoreError: the store refused this run's deferral ({_said(exc)})",
            retry_at=result.retry_at,
            started_at=result.started_at,
        )
    return RunResult(
        run=result.run,
        outcome=RunOutcome.FAILURE,
        finished_at=result.finished_at,
        error=f"StoreError: the store refused this run's {result.outcome.value} result ({_said(exc)})",
        error_type=STORE_ERROR_TYPE,
        dead_letter=result.dead_letter or result.retry_at is not None,
        started_at=result.started_at,
    )
