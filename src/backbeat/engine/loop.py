"""The loop: claim due work from the store, decide fire times, run, renew leases, complete."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import random
import socket
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from backbeat.abc import Executor, RunHook, Store
from backbeat.engine import cancellations
from backbeat.engine.catchup import CatchUp, split_due
from backbeat.engine.completion import Completions
from backbeat.engine.fencing import LeaseDeadlines
from backbeat.engine.history import HistoryRecorder
from backbeat.engine.invoke import Invoker
from backbeat.errors import BackbeatError, LeaseLostError, StoreError
from backbeat.model import triggers
from backbeat.model.events import EventHub, EventKind, SchedulerEvent
from backbeat.model.history import HistorySettings
from backbeat.model.overlap import Overlap
from backbeat.model.records import Claim, FireDecision, FireResult, Run, RunOutcome, RunResult, Task, utcnow
from backbeat.model.registry import JobRegistry
from backbeat.policies.enforcement import RunPolicies
from backbeat.policies.handlers import TaskFailureHandler

log = logging.getLogger("backbeat.engine")

QUARANTINE_RECHECK = timedelta(seconds=30)
"""How long a run whose task record cannot be read waits before it is looked at again."""
CANCEL_LOOK_DELAY = 0.25
"""Seconds from a wake-up to the look at cancel requests it prompts: the wake-ups of that time
share one store read. A wake-up does not say what changed, so a process running runs while
wake-ups keep coming (adds, recurring fires, other processes' commits on SQLite) reads the
cancel document up to four times a second."""
CLAIM_GRACE = 1.0
"""Seconds a stop waits at least for a claim in flight, to give back what it takes (a stop with
a shorter timeout, ``shutdown(wait=False)`` included, waits this long; a lease at most)."""


def default_owner() -> str:
    """A name unique to this engine: host, pid and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass(slots=True, kw_only=True)
class EngineConfig:
    """How the engine claims and runs work."""

    owner: str = field(default_factory=default_owner)
    lease: timedelta = timedelta(seconds=10)
    batch_size: int = 500
    max_concurrency: int = 1000
    """Runs this process executes at once; claims never take more than it can start."""
    poll_interval: float = 1.0
    """Longest sleep without looking at the store (the fallback when a wake-up is lost)."""
    claim_ahead: timedelta = timedelta(milliseconds=50)
    """Tasks due this soon are claimed and fired early, their runs started at their fire time:
    a run then starts on time however long a claim takes (at most a quarter of the lease)."""
    shutdown_timeout: float = 30.0
    store_retry_max: float = 5.0
    claim_enabled: bool = True
    """False for a producer-only process: it adds tasks but never runs them."""
    fencing: bool = True
    """Stop a run whose lease was not renewed in time (see :mod:`backbeat.engine.fencing`); off
    for a store no other process shares, where nobody can take a run over."""
    history: HistorySettings | None = field(default_factory=HistorySettings)
    """What run history is recorded and kept (see :mod:`backbeat.engine.history`); ``None``: none."""


async def _cancel_until_done(tasks: list[asyncio.Task[None]], every: float = 0.05) -> None:
    """Cancel ``tasks`` again every ``every`` seconds until each has ended.

    A driver may swallow a cancel (redis-py's pub/sub read can return "no message" for one,
    which left ``stop`` waiting on the wake-up listener for ever), so one cancel is not enough.
    """
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=every)
    for task in tasks:
        if not task.cancelled():
            task.exception()  # retrieved: an error of a loop being stopped is not reported again


class Engine:
    """Claims due tasks and runs for one owner and executes them with the configured executors."""

    def __init__(
        self,
        store: Store,
        registry: JobRegistry,
        executors: Mapping[str, Executor],
        events: EventHub,
        config: EngineConfig | None = None,
        *,
        provider: Any = None,
        clock: Callable[[], datetime] = utcnow,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        monotonic: Callable[[], float] | None = None,
        run_hooks: Sequence[RunHook] = (),
        failure_handlers: Sequence[TaskFailureHandler] = (),
        history_store: Store | None = None,
    ) -> None:
        self.store = store
        self.run_hooks = run_hooks
        self.policies = RunPolicies(store, clock, failure_handlers)
        self.registry = registry
        self.executors = dict(executors)
        self.events = events
        self.config = config or EngineConfig()
        self.provider = provider
        self.clock = clock
        self.sleep = sleep
        """How a run claimed ahead waits for its fire time (by ``clock``), and a refused
        completion for its retry: a test's fake clock passes a sleep that waits for it to be
        advanced."""
        self._active: dict[str, tuple[Run, asyncio.Task[None]]] = {}
        self._released: set[str] = set()
        self._fenced: set[str] = set()
        """Runs stopped here because their lease could not be renewed in time."""
        self._side_tasks: set[asyncio.Task[None]] = set()
        """Cancel requests being sent (``cancel_other``) and looked for: held so they are not
        collected."""
        self._cancel_look: asyncio.Task[None] | None = None
        """The look at cancel requests a wake-up prompted, until it reads the store."""
        self.deadlines = LeaseDeadlines(self.config.lease, self._fence, now=monotonic)
        """Until when this process surely holds each run, by ``monotonic`` (default: the event
        loop's clock); a run not renewed by then is stopped (see :mod:`backbeat.engine.fencing`)."""
        self._ahead = max(min(self.config.claim_ahead, self.config.lease / 4), timedelta(0))
        self._claiming: asyncio.Task[_Claimed] | None = None
        """The claim sent and not yet read (the next one, while the claim loop fires and starts
        a full batch)."""
        self._reserved = 0
        """The limit of the claim in ``_claiming``: room kept for what it takes."""
        self._unstarted: _Claimed | None = None
        """A batch the claim loop was stopped in before it started it: given back at ``stop``."""
        self._claimed_to = datetime.min.replace(tzinfo=UTC)
        """The horizon of the last claim: what is due by it was claimable then."""
        self._held: datetime | None = None
        """The earliest fire time claimed ahead but held back (``max_instances``): claims look
        no further ahead until it comes, else they would take and release it again and again."""
        self._wake = asyncio.Event()
        self._looks_at: datetime | None = None
        """When the sleeping claim loop looks at the store next (None: it is not sleeping)."""
        self._notified: datetime | None = None
        """The earliest due time notified since the last claim was sent while the loop was awake:
        what it reads of the store before it sleeps again may have missed those adds."""
        self._flush = asyncio.Event()
        self.history = HistoryRecorder(
            history_store or store,
            self.config.history,
            owner=self.config.owner,
            clock=clock,
            by_completions=history_store is None or history_store is store,
            wake=self._flush.set,
        )
        """Records finished runs in ``history_store`` (default: ``store``)."""
        self.completions = Completions(
            store,
            self.config.owner,
            self.history,
            self.deadlines,
            events,
            self._flush,
            clock=clock,
            sleep=sleep,
            lease=self.config.lease,
            retry_max=self.config.store_retry_max,
            completed=self._capacity_freed,
            store_error=self._store_error,
        )
        self._capacity = asyncio.Event()
        self._stopping = False
        self._background: list[asyncio.Task[None]] = []
        self.due_lag = 0.0
        """Seconds the oldest due, unclaimed item has waited (sampled every lease/3): a backlog
        shows as a lag that grows."""
        self.invoke = Invoker(
            registry=registry,
            executors=self.executors,
            provider=provider,
            clock=clock,
            owner=self.config.owner,
            run_hooks=run_hooks,
            events=events,
            handlers=failure_handlers,
            emit=self._emit,
            holds=self.deadlines.holds if self.config.fencing else _always_held,
        )

    @property
    def owner(self) -> str:
        return self.config.owner

    @property
    def running(self) -> bool:
        return bool(self._background) and not self._stopping

    def active_runs(self) -> list[Run]:
        """Runs this process is executing now."""
        return [run for run, _ in self._active.values()]

    def notify(self, due: datetime | None = None) -> None:
        """Something changed locally (a task was added): look at the store now, unless what
        changed is ``due`` no sooner than the sleeping claim loop looks anyway, or the loop is
        awake and ``due`` is not yet claimable (it then sleeps no later than ``due`` calls for)."""
        if due is not None:
            if self._looks_at is not None:
                if due - self._ahead >= self._looks_at:
                    return
            elif due - self._ahead > self.clock():
                # Single adds come faster than a claim's round trip: waking for each kept the
                # loop claiming (a store call per few adds) for tasks due later anyway.
                if self._notified is None or due < self._notified:
                    self._notified = due
                return
        self._wake.set()

    async def start(self) -> None:
        """Start claiming (unless producer-only), renewing leases and completing runs."""
        self._stopping = False
        spawn = asyncio.get_running_loop().create_task
        self._background = [spawn(self.completions.loop(), name="backbeat-complete")]
        if self.config.claim_enabled:
            self._background += [
                spawn(self._claim_loop(), name="backbeat-claim"),
                spawn(self._renew_loop(), name="backbeat-renew"),
                spawn(self._listen_loop(), name="backbeat-wakeups"),
            ]

    async def stop(self, timeout: float | None = None) -> None:
        """Stop claiming, give back what a claim in flight takes (waited for up to ``timeout``, at
        least :data:`CLAIM_GRACE`) and let running jobs finish until ``timeout`` (``shutdown_timeout``
        by default) has passed since the stop began, then release what is left;
        the completions of the runs that ended are stored within a lease, or left to it."""
        if not self._background:
            return
        self._stopping = True
        self._wake.set()
        self._capacity.set()
        wait_for = self.config.shutdown_timeout if timeout is None else timeout
        deadline = asyncio.get_running_loop().time() + wait_for
        claim_tasks = [t for t in self._background if t.get_name() in ("backbeat-claim", "backbeat-wakeups")]
        if self._cancel_look is not None:
            claim_tasks.append(self._cancel_look)
        await _cancel_until_done(claim_tasks)
        # a healthy store answers a claim in milliseconds: shutdown(wait=False) gives it back too
        await self._give_back_claims(within=max(wait_for, CLAIM_GRACE))
        pending = [t for _, t in self._active.values()]
        if pending:
            left = max(deadline - asyncio.get_running_loop().time(), 0.0)
            _, still_running = await asyncio.wait(pending, timeout=left)
            if still_running:
                await self._abandon(list(self._active.values()))
        await self.completions.last(within=self.config.lease.total_seconds())
        await self.history.flush(force=True)
        await _cancel_until_done(self._background)
        self._background = []
        self.deadlines.close()

    async def _abandon(self, entries: list[tuple[Run, asyncio.Task[None]]]) -> None:
        # Cancel first, so this process stops working on a run before another may take it over.
        for run, _ in entries:
            self._released.add(run.id)
            self._stop(run.id)
        await asyncio.wait([t for _, t in entries], timeout=5)
        leases = {run.id: run.fencing_token for run, _ in entries}
        log.warning("shutdown timeout: releasing %d unfinished runs for other instances", len(leases))
        with contextlib.suppress(StoreError):
            await self.store.release(self.owner, leases=leases, task_ids=(), now=self.clock())

    # -- claiming -------------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        backoff = 0.05
        while not self._stopping:
            try:
                if self._claiming is None:
                    capacity = self.config.max_concurrency - len(self._active)
                    if capacity <= 0:
                        self._capacity.clear()
                        await self._capacity.wait()
                        continue
                    self._send_claim(min(self.config.batch_size, capacity))
                claimed = await self._sent_claim()
                try:
                    if claimed.full and not self._stopping:
                        await self._send_next_claim(claimed)
                    await self._start(claimed)
                except asyncio.CancelledError:
                    self._unstarted = claimed  # stopped before its runs started: stop gives it back
                    raise
                backoff = 0.05
            except (StoreError, OSError) as exc:
                self._store_error(exc, "claiming due work")
                await asyncio.sleep(backoff * (1 + random.random()))
                backoff = min(backoff * 2, self.config.store_retry_max)
                continue
            except Exception as exc:  # a bug must not end the loop silently: nothing would run here
                log.exception("unexpected error while claiming due work (will retry)")
                self.events.emit(SchedulerEvent(kind=EventKind.STORE_ERROR, error=exc))
                await asyncio.sleep(backoff * (1 + random.random()))
                backoff = min(backoff * 2, self.config.store_retry_max)
                continue
            if not claimed.full:
                await self._sleep_until_due()

    def _send_claim(self, limit: int) -> None:
        """Send a claim of up to ``limit`` items as a task of its own, kept in ``_claiming``
        until :meth:`_sent_claim` reads it."""
        spawn = asyncio.get_running_loop().create_task
        self._claiming = spawn(self._claim(limit), name="backbeat-claim-sent")
        self._reserved = limit

    async def _sent_claim(self) -> _Claimed:
        """What the claim sent took. Shielded: the claim loop stopped while a claim is in flight
        leaves it in ``_claiming``, for ``stop`` to give back what the store took for it (a claim
        cancelled mid-way would leave it claimed until its lease)."""
        assert self._claiming is not None
        try:
            claimed = await asyncio.shield(self._claiming)
        except Exception:
            self._claiming, self._reserved = None, 0
            raise
        self._claiming, self._reserved = None, 0
        return claimed

    async def _send_next_claim(self, claimed: _Claimed) -> None:
        """Send the next claim before ``claimed``'s batch is fired and started (the store works
        on it meanwhile instead of waiting for the client), if the process can start that batch
        and more: claims never take more than it can start."""
        capacity = self.config.max_concurrency - len(self._active) - claimed.taken
        if capacity < self.config.batch_size:
            # the runs started last may not have taken their first step yet: short ones end in it
            await asyncio.sleep(0)
            capacity = self.config.max_concurrency - len(self._active) - claimed.taken
            if capacity <= 0 or self._stopping:
                return
        self._send_claim(min(self.config.batch_size, capacity))
        await asyncio.sleep(0)  # it sends the claim before this batch is decided and fired

    async def _give_back_claims(self, within: float) -> None:
        """At shutdown, once the claim loop has ended: give back what it claimed and did not
        start (the batch it was stopped in, what the claim in flight takes: waited for up to
        ``within`` seconds or a lease, whichever is shorter), so that another process can run it
        at once instead of after its lease."""
        given: list[_Claimed] = []
        unstarted, self._unstarted = self._unstarted, None
        if unstarted is not None:
            given.append(unstarted)
        sent, self._claiming = self._claiming, None
        if sent is not None:
            if not sent.done():
                await asyncio.wait([sent], timeout=min(within, self.config.lease.total_seconds()))
            if not sent.done():
                sent.cancel()  # what the store takes for it, if anything, lapses with its lease
                sent.add_done_callback(_retrieved)
            elif not sent.cancelled() and sent.exception() is None:
                given.append(sent.result())
        leases = {run.id: run.fencing_token for claimed in given for run in claimed.runs}
        # a fired batch's tasks are no longer claimed (a fire cut off may or may not have been
        # taken: the store releases only what this owner still claims)
        task_ids = [task.id for claimed in given if claimed.fired is None for task in claimed.claim.tasks]
        if leases or task_ids:
            with contextlib.suppress(StoreError, OSError):
                await self.store.release(self.owner, leases=leases, task_ids=task_ids, now=self.clock())
            self.deadlines.forget(list(leases))

    async def _claim_once(self, limit: int) -> int:
        """Claim up to ``limit`` items, fire and start them; how many were claimed."""
        return await self._start(await self._claim(limit))

    async def _claim(self, limit: int) -> _Claimed:
        self._wake.clear()
        self._notified = None  # the claim sent now sees every add notified so far
        now = self.clock()
        horizon = now + self._ahead
        if self._held is not None and self._held > now:
            horizon = min(horizon, self._held - timedelta(microseconds=1))
        else:
            self._held = None
        self._claimed_to = horizon
        sent = self.deadlines.now()
        claim = await self.store.claim_due(
            self.owner, now=now, lease=self.config.lease, limit=limit, horizon=horizon
        )
        self.deadlines.granted([run.id for run in claim.runs], sent)
        return _Claimed(claim, now, limit)

    async def _start(self, claimed: _Claimed) -> int:
        """Fire the claimed tasks and start their runs and the claimed ones; how many were claimed."""
        claim, now = claimed.claim, claimed.now
        if claim.tasks:
            # what the claim counted is a run per claimed item; more (catch-up) only in what is left
            room = self.config.max_concurrency - len(self._active) - claimed.taken - self._reserved
            claimed.fired = await self._fire(claim.tasks, now, room=room)
        for run in await self._still_held(claimed.runs, since=now):
            self._dispatch(run)
        return claimed.taken

    async def _still_held(self, runs: list[Run], *, since: datetime) -> list[Run]:
        """The runs whose leases (taken at ``since``) this owner still holds, pushed further.

        Only looked at when the store was slow: if claiming and firing took a third of the
        lease or more, a lease may have ended meanwhile and another owner taken the run over.
        A run given up so is recorded in the history as ``lost_lease`` without a start: its
        attempt number was spent here, and the owner that took it over runs the next one.
        """
        if not runs or self.clock() - since < self.config.lease / 3:
            return runs
        sent = self.deadlines.now()
        held = await self.store.extend(
            self.owner, {run.id: run.fencing_token for run in runs}, now=self.clock(), lease=self.config.lease
        )
        self.deadlines.granted(held, sent)
        for run in runs:
            if run.id not in held:
                log.warning(
                    "run %s (attempt %d) not started: its lease ended while the store was slow",
                    run.id,
                    run.attempt,
                )
                self.history.lost_lease(run, run.task, None)
                if run.task is not None:
                    self._emit(EventKind.RUN_LEASE_LOST, run.task, run=run)
        return [run for run in runs if run.id in held]

    async def _sleep_until_due(self) -> None:
        if self._wake.is_set():
            return
        try:
            next_time = await self.store.next_wakeup(now=self.clock())
        except (StoreError, OSError) as exc:
            self._store_error(exc, "reading the next wake-up")
            next_time = None
        notified, self._notified = self._notified, None
        if notified is not None and (next_time is None or notified < next_time):
            next_time = notified
        delay = self.config.poll_interval
        if next_time is not None:
            claim_at = next_time  # when next_time <= _claimed_to it is not claimable ahead (a run's lease)
            if next_time > self._claimed_to:
                claim_at = next_time - self._ahead
                if self._held is not None:
                    claim_at = max(claim_at, self._held)
            delay = min(delay, max((claim_at - self.clock()).total_seconds(), 0.0005))
        self._looks_at = self.clock() + timedelta(seconds=delay)
        # asyncio.timeout, not wait_for: on 3.11 wait_for swallows a cancel that races the event.
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()
        finally:
            self._looks_at = None

    async def _listen_loop(self) -> None:
        while not self._stopping:
            try:
                async for _ in self.store.wakeups():
                    if self._stopping:
                        return
                    self._wake.set()
                    self._look_at_cancels_soon()
            except (StoreError, OSError) as exc:
                self._store_error(exc, "listening for wake-ups")
            await asyncio.sleep(self.config.poll_interval)

    async def _fire(self, tasks: list[Task], now: datetime, *, room: int) -> list[Run]:
        """Decide and fire ``tasks``; the runs created. A task may fire several times (catch-up
        without ``coalesce``): beyond its first, as many as ``room`` holds, so the runs going here
        stay within ``max_concurrency``. A task whose fire times do not all fit stays due at the
        first left out, for a later claim."""
        decisions: list[FireDecision] = []
        reports: dict[str, Callable[[], None] | None] = {}
        by_id = {task.id: task for task in tasks}
        for task in tasks:
            decided = self._decide(task, now)
            if isinstance(decided, str):  # the task cannot run here
                await self._orphan(task, decided)
                decided = _no_fire(task), None
            decision, reports[task.id] = decided
            if len(decision.fire_times) > 1 and decision.overlap == Overlap.ALLOW_ALL:
                room = _within(decision, room, admits=task.options.max_instances)
            decisions.append(decision)
        # the runs' leases count from now, not from the claim: a fire held up (by a lock, a
        # slow store) must not create runs whose lease already ended, for another owner to take
        sent = self.deadlines.now()
        results: list[FireResult] = await self.store.fire(
            self.owner, decisions, now=self.clock(), lease=self.config.lease
        )
        runs: list[Run] = []
        for result in results:
            task = by_id[result.task_id]
            # only now: a decision the store ignored (the claim was lost) is the next claimer's to report
            if (report := reports[task.id]) is not None:
                report()
            for fire_time in result.skipped:
                self._skipped(task, fire_time)
            if result.buffered:
                log.info(
                    "task %s (%s): fire times %s wait for its running run (overlap=%s)",
                    task.id,
                    task.name,
                    [run.fire_time.isoformat() for run in result.buffered],
                    task.options.overlap,
                )
                if task.options.overlap == Overlap.CANCEL_OTHER:
                    # beside the dispatch of this batch's runs, not before it
                    cancelling = asyncio.get_running_loop().create_task(self._cancel_others(task))
                    self._side_tasks.add(cancelling)
                    cancelling.add_done_callback(self._side_tasks.discard)
            for run in result.runs:
                run.task = run.task or task
                runs.append(run)
        self.deadlines.granted([run.id for run in runs], sent)
        return runs

    def _skipped(self, task: Task, fire_time: datetime, why: str | None = None) -> None:
        """A fire time the task's overlap policy refused: logged, an event, a history entry."""
        if task.options.overlap == Overlap.ALLOW_ALL:
            kind, why = EventKind.MAX_INSTANCES, f"max_instances={task.options.max_instances} runs were going"
        else:
            kind, why = EventKind.RUN_SKIPPED, why or f"a run was going (overlap={task.options.overlap})"
        log.warning("task %s (%s): fire time %s skipped: %s", task.id, task.name, fire_time, why)
        self._emit(kind, task, fire_time=fire_time)
        self.history.skipped(task, fire_time, why=why)

    async def _cancel_others(self, task: Task) -> None:
        """Ask whichever process runs ``task``'s running run to cancel it (overlap
        ``cancel_other``): its buffered run starts once it has ended. A run a removed task of
        the same id left is not ``task``'s: it goes on."""
        try:
            runs = await self.store.list_runs(task.id)
            running = [run for run in runs if not run.buffered and not run.detached]
            for run in running:
                if not self.cancel(run.id):  # here: at once; elsewhere: at its next lease renewal
                    await cancellations.request(self.store, run.id, self.clock())
        except (StoreError, OSError) as exc:
            self._store_error(exc, "asking for a run's cancellation")

    def _decide(self, task: Task, now: datetime) -> tuple[FireDecision, Callable[[], None] | None] | str:
        """What to fire for a claimed task, and what reports the fire times it leaves out
        (missed, coalesced, skipped; ``None``: none), to call once the store has taken the
        decision; or why the task cannot run here, for it to be orphaned. Not a coroutine:
        it is called for every fire."""
        if not self.registry.knows(task.job):
            return f"job {task.job!r} is not registered in process {self.owner}"
        assert task.next_run_time is not None
        ahead = task.next_run_time > now  # claimed ahead: only its next fire time, when it comes
        if ahead and task.running >= task.options.max_instances:
            # its previous run may yet end in time: decide when the fire time comes
            self._held = min(self._held or task.next_run_time, task.next_run_time)
            return _no_fire(task), None
        try:
            until = task.next_run_time if ahead else now
            due, following = triggers.due_fire_times(task.trigger, task.next_run_time, until)
        except BackbeatError as exc:
            return f"invalid trigger: {exc}"
        split = split_due(due, now, window=task.options.misfire_grace_time, coalesce=task.options.coalesce)
        fire_times = split.run
        dropped: list[datetime] = []  # not ``list[datetime]()``: calling the alias costs 20 times more
        if len(fire_times) > 1 and task.options.overlap == Overlap.CANCEL_OTHER:
            # each would cancel the one before it: only the latest runs
            fire_times, dropped = fire_times[-1:], fire_times[:-1]
        decision = FireDecision(
            task_id=task.id,
            claimed_version=task.version,
            fire_times=fire_times,
            next_run_time=following,
            missed=len(split.missed),
            overlap=task.options.overlap,
        )
        if not (split.missed or split.coalesced or dropped):
            return decision, None

        def report() -> None:
            self._report_catch_up(task, split, now)
            for fire_time in dropped:
                self._skipped(task, fire_time, f"a later fire time is due (overlap={task.options.overlap})")

        return decision, report

    def _report_catch_up(self, task: Task, split: CatchUp, now: datetime) -> None:
        """Fire times that will not run: missed (older than the catch-up window) or coalesced."""
        for fire_time in split.missed:
            log.warning(
                "task %s (%s): fire time %s missed by %s (catchup_window=misfire_grace_time=%ss)",
                task.id,
                task.name,
                fire_time,
                now - fire_time,
                task.options.misfire_grace_time,
            )
            self._emit(EventKind.RUN_MISSED, task, fire_time=fire_time)
            self.history.missed(task, fire_time, late_by=now - fire_time)
        if split.coalesced:
            log.info(
                "task %s (%s): %d fire times from %s coalesced into the run of %s",
                task.id,
                task.name,
                len(split.coalesced),
                split.coalesced[0],
                split.run[0],
            )
        for fire_time in split.coalesced:
            self._emit(EventKind.RUN_COALESCED, task, fire_time=fire_time)
            self.history.coalesced(task, fire_time, into=split.run[0])

    async def _orphan(self, task: Task, reason: str) -> None:
        log.error("task %s (%s) kept but not run: %s", task.id, task.name, reason)
        await self.store.update(task.id, orphaned=reason)
        self._emit(EventKind.TASK_ORPHANED, task, error=BackbeatError(reason))

    # -- running ----------------------------------------------------------------------------

    def _dispatch(self, run: Run) -> None:
        if run.id in self._active:
            return
        task = asyncio.get_running_loop().create_task(self._execute(run), name=f"backbeat-run:{run.id}")
        # an eager task factory (asyncio.eager_task_factory) may have run it to its end already:
        # _finish took it out before it was put in
        if not task.done():
            self._active[run.id] = (run, task)

    async def _execute(self, run: Run) -> None:
        task = run.task
        started: datetime | None = None  # when the run started, for its history entry
        try:
            now = self.clock()
            if (early := (run.fire_time - now).total_seconds()) > 0:
                await self.sleep(early)  # claimed ahead (``claim_ahead``): start on time
                now = self.clock()
            started = now
            if task is None and await self._task_quarantined(run.task_id):
                # keep the fire time until someone repairs (re-adds) the record; look again later
                finished = self._result(run, RunOutcome.DEFERRED, "its task record cannot be read")
                finished.retry_at = finished.finished_at + QUARANTINE_RECHECK
                log.error("run %s kept, not run: the record of task %s is quarantined", run.id, run.task_id)
            elif task is None:
                finished = self._result(run, RunOutcome.CANCELLED, "its task was removed")
            elif run.recovered and task.options.at_most_once:
                finished = self._result(
                    run, RunOutcome.LOST, "owner died mid-run and the task is at-most-once"
                )
                log.warning("run %s lost: %s", run.id, finished.error)
                self._emit(EventKind.RUN_LOST, task, run=run)
            elif task.options.circuit_breaker and (defer_until := await self.policies.admit(task)):
                finished = self._result(run, RunOutcome.DEFERRED, "its circuit breaker is open")
                finished.retry_at = defer_until
                self._emit(EventKind.RUN_DEFERRED, task, run=run)
            else:
                # ``now`` is the start unless the breaker's check awaited the store
                attempt = await self.invoke(task, run, started=None if task.options.circuit_breaker else now)
                if self.policies.needed(task, attempt):
                    finished = await self.policies.settle(task, run, attempt)
                else:
                    finished = RunResult(run=run, outcome=attempt.outcome, finished_at=self.clock())
        except asyncio.CancelledError as exc:
            self._stopped(run, task, exc, started)
            return
        self._finish(finished, started)

    def _finish(self, finished: RunResult, started: datetime | None) -> None:
        """A run ended here (it started at ``started``; ``None``: it never did): its result
        waits for the complete loop."""
        if self.history.enabled:
            finished.started_at = started
        self.completions.add(finished)
        self._active.pop(finished.run.id, None)
        self._capacity.set()

    def _stopped(
        self, run: Run, task: Task | None, exc: asyncio.CancelledError, started: datetime | None = None
    ) -> None:
        """A run cancelled here (after it started at ``started``, if it did): released
        (shutdown), fenced (its lease may be another's now) or completed as cancelled."""
        if run.id in self._released:
            self._active.pop(run.id, None)
        elif isinstance(exc, LeaseLostError) or run.id in self._fenced:
            self._lease_lost(run, task, started)
        else:
            self._finish(self._result(run, RunOutcome.CANCELLED, "cancelled"), started)

    def _stop(self, run_id: str) -> bool:
        """Cancel the asyncio task of a run going here; whether there was one. A task cancelled
        before its first step never runs a line of ``_execute``, so its end is handled here."""
        entry = self._active.get(run_id)
        if entry is None:
            return False
        entry[1].cancel()
        entry[1].add_done_callback(functools.partial(self._end_unstarted, entry))
        return True

    def _end_unstarted(self, entry: tuple[Run, asyncio.Task[None]], _: object) -> None:
        run = entry[0]
        if self._active.get(run.id) is entry:  # ``_execute`` never ran: nothing took it out
            self._stopped(run, run.task, asyncio.CancelledError())

    async def _task_quarantined(self, task_id: str) -> bool:
        try:
            return any(record.key == task_id for record in await self.store.quarantined())
        except (StoreError, OSError) as exc:
            self._store_error(exc, "reading quarantined records")
            return True  # unsure: keep the run rather than drop its fire time

    def _result(self, run: Run, outcome: RunOutcome, error: str | None = None) -> RunResult:
        return RunResult(run=run, outcome=outcome, finished_at=self.clock(), error=error)

    # -- completing and renewing -----------------------------------------------------------

    async def _renew_loop(self) -> None:
        interval = self.config.lease.total_seconds() / 3
        while True:
            await asyncio.sleep(interval)
            await self.renew_leases()

    async def renew_leases(self) -> set[str]:
        """One step of the renew loop (run every lease/3): sample the due lag, push the leases of
        the runs held here to ``clock() + lease``, report running runs whose lease another owner
        took, apply cancel requests. Returns the ids of those lost runs."""
        await self._sample_due_lag()
        leases = {run_id: run.fencing_token for run_id, (run, _) in self._active.items()}
        pending = self.completions.pending
        leases.update((run_id, result.run.fencing_token) for run_id, result in pending.items())
        held_ids = set(leases)
        if not held_ids:
            return set()
        sent = self.deadlines.now()
        try:
            held = await self.store.extend(self.owner, leases, now=self.clock(), lease=self.config.lease)
        except (StoreError, OSError) as exc:
            self._store_error(exc, "renewing leases")
            return set()
        self.deadlines.granted(held, sent)
        # only runs still executing: one completed during the extend is gone, not lost, and a
        # finished one truly lost is reported when its completion is refused
        lost = (held_ids - held) & set(self._active)
        if lost:
            log.warning("lost the lease of runs %s: another instance may run them again", sorted(lost))
        await self._apply_cancel_requests()
        return lost

    async def _sample_due_lag(self) -> None:
        try:
            earliest = await self.store.next_wakeup(now=self.clock())
        except (StoreError, OSError) as exc:
            self._store_error(exc, "reading the next wake-up")
            return
        lag = 0.0 if earliest is None else (self.clock() - earliest).total_seconds()
        self.due_lag = max(lag, 0.0)

    def _look_at_cancels_soon(self) -> None:
        """A wake-up came, maybe for a cancel request: look at the requests of the runs going
        here within :data:`CANCEL_LOOK_DELAY`. One look is pending at most, so a stream of
        wake-ups costs one store read per delay, not one each."""
        if self._cancel_look is None and self._active and not self._stopping:
            self._cancel_look = look = asyncio.get_running_loop().create_task(self._look_at_cancels())
            self._side_tasks.add(look)  # held until it ends: ``_cancel_look`` lets go before
            look.add_done_callback(self._side_tasks.discard)

    async def _look_at_cancels(self) -> None:
        try:
            await asyncio.sleep(CANCEL_LOOK_DELAY)
        finally:
            self._cancel_look = None  # a wake-up from here on may be a request this look misses
        await self._apply_cancel_requests()

    async def _apply_cancel_requests(self) -> None:
        try:
            wanted = await cancellations.pending(self.store, list(self._active))
            if wanted:
                for run_id in wanted:
                    self.cancel(run_id)
                await cancellations.done(self.store, wanted, self.clock())
        except (StoreError, OSError) as exc:
            self._store_error(exc, "reading cancel requests")

    def _fence(self, run_ids: list[str]) -> None:
        """Stop the runs whose lease could not be renewed in time (called by ``deadlines``)."""
        if not self.config.fencing:
            return
        for run_id in run_ids:
            entry = self._active.get(run_id)
            if entry is not None and run_id not in self._fenced:
                log.warning("run %s stopped: its lease was not renewed in time (another may take it)", run_id)
                self._fenced.add(run_id)
                self._stop(run_id)

    def _lease_lost(self, run: Run, task: Task | None, started: datetime | None) -> None:
        """A run fenced here: it is not completed (its lease may be another owner's now)."""
        self._fenced.discard(run.id)
        self._active.pop(run.id, None)
        self._capacity.set()
        log.warning("run %s ended here without completing: its lease was lost", run.id)
        self.history.lost_lease(run, task, started)
        if task is not None:
            self._emit(EventKind.RUN_LEASE_LOST, task, run=run)

    def cancel(self, run_id: str) -> bool:
        """Cancel a run this process is executing (it completes as cancelled); whether it was here."""
        entry = self._active.get(run_id)
        if entry is None:
            return False
        log.warning("cancelling run %s on request", run_id)
        return self._stop(run_id)

    # -- events ---------------------------------------------------------------------------------

    def _emit(
        self,
        kind: EventKind,
        task: Task,
        *,
        run: Run | None = None,
        fire_time: datetime | None = None,
        **fields: Any,
    ) -> None:
        if not self.events.wants(kind):
            return
        self.events.emit(
            SchedulerEvent(
                kind=kind,
                task_id=task.id,
                task_name=task.name,
                run_id=run.id if run else None,
                fire_time=run.fire_time if run else fire_time,
                attempt=run.attempt if run else None,
                **fields,
            )
        )

    def _capacity_freed(self) -> None:
        """Completions freed capacity: claim again (unless stopping)."""
        if not self._stopping:
            self._wake.set()

    def _store_error(self, exc: BaseException, doing: str) -> None:
        log.warning("store error while %s (will retry): %r", doing, exc)
        self.events.emit(SchedulerEvent(kind=EventKind.STORE_ERROR, error=exc))


@dataclass(slots=True)
class _Claimed:
    """What one claim took, when (``now``, the claim's clock) and at most how much (``limit``),
    and the runs its fire created (``None``: not fired yet)."""

    claim: Claim
    now: datetime
    limit: int
    fired: list[Run] | None = None

    @property
    def runs(self) -> list[Run]:
        """The runs it holds: those claimed, and those its fire created."""
        return self.claim.runs + self.fired if self.fired else self.claim.runs

    @property
    def taken(self) -> int:
        return len(self.claim.tasks) + len(self.claim.runs)

    @property
    def full(self) -> bool:
        """Whether it took all it asked for: more may be due."""
        return self.taken >= self.limit


def _within(decision: FireDecision, room: int, *, admits: int) -> int:
    """Keep the fire times of ``decision`` beyond its first that ``room`` holds; the task's next
    run time becomes the first left out (it stays due). The room left. The store starts at most
    ``admits`` (``max_instances``) of them and skips the rest: when those fit, all are kept, for
    the rest to be skipped now as on a worker with room for all of them."""
    room = max(room, 0)
    more = min(len(decision.fire_times), admits) - 1
    if more <= room:
        return room - max(more, 0)
    kept = 1 + room
    decision.next_run_time = decision.fire_times[kept]
    decision.fire_times = decision.fire_times[:kept]
    return 0


def _no_fire(task: Task) -> FireDecision:
    """The decision to fire nothing now: the claimed task keeps its next run time."""
    return FireDecision(
        task_id=task.id, claimed_version=task.version, fire_times=[], next_run_time=task.next_run_time
    )


def _retrieved(task: asyncio.Task[Any]) -> None:
    """Take an abandoned task's error (it is not reported as never retrieved)."""
    if not task.cancelled():
        task.exception()


def _always_held(run_id: str) -> bool:
    return True
