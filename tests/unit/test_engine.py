"""The engine's steps on the memory store, by a fake clock: misfire, coalesce, max_instances,
claim-ahead, lease renewal. No test waits for real time to pass."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from tests.fakes import FakeClock, settle

from backbeat.api.taskbuild import from_callable
from backbeat.engine.loop import Engine, EngineConfig
from backbeat.errors import StoreError
from backbeat.executors import AsyncIOExecutor
from backbeat.model.events import EventHub, EventKind, SchedulerEvent
from backbeat.model.history import HistoryQuery
from backbeat.model.records import Run, RunResult, Task, TaskOptions, run_id_for
from backbeat.model.registry import JobRegistry
from backbeat.model.triggers import make_trigger_spec
from backbeat.policies.definitions import RetryPolicy
from backbeat.stores.memory import MemoryStore

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
LEASE = timedelta(seconds=10)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@dataclass
class Job:
    """A job that records the fake time it started at, waits for ``gate`` when one is set and
    raises ``error`` when one is set."""

    clock: FakeClock
    started: list[datetime] = field(default_factory=list)
    gate: asyncio.Event | None = None
    error: Exception | None = None

    async def __call__(self) -> None:
        self.started.append(self.clock.now)
        if self.gate is not None:
            await self.gate.wait()
        if self.error is not None:
            raise self.error


@dataclass
class World:
    """One memory store, registry, event log and fake clock, shared by the engines of a test."""

    clock: FakeClock = field(default_factory=lambda: FakeClock(T0))
    store: MemoryStore = field(init=False)
    """Leases by the same fake clock, so advancing it ends them."""
    registry: JobRegistry = field(default_factory=JobRegistry)
    events: list[SchedulerEvent] = field(default_factory=list)
    engines: list[Engine] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.store = MemoryStore(lease_clock=self.clock)

    def engine(self, owner: str = "a", **config: Any) -> Engine:
        hub = EventHub()
        hub.add_listener(self.events.append)
        engine = Engine(
            self.store,
            self.registry,
            {"default": AsyncIOExecutor()},
            hub,
            EngineConfig(owner=owner, lease=LEASE, **config),
            clock=self.clock,
            sleep=self.clock.sleep,
        )
        self.engines.append(engine)
        return engine

    def job(self, *, gated: bool = False, error: Exception | None = None) -> Job:
        return Job(self.clock, gate=asyncio.Event() if gated else None, error=error)

    async def add(
        self,
        job: Job,
        *,
        first: datetime = T0,
        every: float | None = 10,
        task_id: str | None = None,
        **options: Any,
    ) -> Task:
        """Store a task running ``job`` every ``every`` seconds (once at ``first`` when None),
        under ``task_id`` when given."""
        trigger = (
            make_trigger_spec("date", run_date=first, now=T0)
            if every is None
            else make_trigger_spec("interval", seconds=every, start_date=first, now=T0)
        )
        task = from_callable(
            self.registry, self._wrap(job), trigger=trigger, options=TaskOptions(**options), now=T0
        ).task
        task.next_run_time = first
        if task_id is not None:
            task.id = task_id
        await self.store.add([task])
        return task

    def fired(self, kind: EventKind) -> list[datetime | None]:
        return [event.fire_time for event in self.events if event.kind == kind]

    @staticmethod
    def _wrap(job: Job) -> Callable[[], Awaitable[None]]:
        async def run() -> None:  # a closure: a local job of this registry
            await job()

        return run


@pytest.fixture
async def world() -> AsyncIterator[World]:
    world = World()
    yield world
    for engine in world.engines:
        for _, task in list(engine._active.values()):
            task.cancel()
        await asyncio.gather(*(task for _, task in engine._active.values()), return_exceptions=True)


async def finish(engine: Engine) -> None:
    """Wait for the runs the engine executes (their jobs must not be blocked) and complete them."""
    async with asyncio.timeout(5):
        await asyncio.gather(*(task for _, task in engine._active.values()))
    await engine.completions.drain()


# -- misfire -------------------------------------------------------------------------------------


async def test_fire_times_later_than_the_grace_time_are_reported_missed_and_not_run(world: World) -> None:
    engine, job = world.engine(), world.job()
    task = await world.add(job, misfire_grace_time=1, coalesce=False)
    world.clock.advance(35.5)

    assert await engine._claim_once(100) == 1
    await settle()

    assert world.fired(EventKind.RUN_MISSED) == [at(0), at(10), at(20), at(30)]
    assert await world.store.list_runs() == []
    assert job.started == []
    stored = await world.store.get(task.id)
    assert stored is not None and stored.next_run_time == at(40)


async def test_only_the_fire_times_within_the_grace_time_run(world: World) -> None:
    engine, job = world.engine(), world.job()
    task = await world.add(job, misfire_grace_time=6, coalesce=False)
    world.clock.advance(35.5)

    decided = engine._decide(task, world.clock.now)
    assert not isinstance(decided, str)
    decision, report = decided
    assert world.fired(EventKind.RUN_MISSED) == []  # reported once the store took the decision
    assert report is not None
    report()

    assert decision.fire_times == [at(30)]
    assert decision.missed == 3
    assert decision.next_run_time == at(40)
    assert world.fired(EventKind.RUN_MISSED) == [at(0), at(10), at(20)]


async def test_a_missed_one_shot_task_is_removed_without_running(world: World) -> None:
    engine, job = world.engine(), world.job()
    task = await world.add(job, every=None, misfire_grace_time=1)
    world.clock.advance(5)

    await engine._claim_once(100)
    await settle()

    assert world.fired(EventKind.RUN_MISSED) == [at(0)]
    assert await world.store.get(task.id) is None
    assert job.started == []


# -- coalesce ------------------------------------------------------------------------------------


async def test_coalesce_runs_once_for_several_missed_fire_times(world: World) -> None:
    engine, job = world.engine(), world.job()
    task = await world.add(job, misfire_grace_time=None, coalesce=True)
    world.clock.advance(35)

    await engine._claim_once(100)

    assert [run.id for run in await world.store.list_runs(task.id)] == [run_id_for(task.id, at(30))]
    await finish(engine)
    assert job.started == [at(35)]
    stored = await world.store.get(task.id)
    assert stored is not None and stored.runs == 1 and stored.running == 0
    assert stored.next_run_time == at(40)


async def test_without_coalesce_each_missed_fire_time_is_its_own_run(world: World) -> None:
    engine, job = world.engine(), world.job()
    task = await world.add(job, misfire_grace_time=None, coalesce=False, max_instances=10)
    world.clock.advance(35)

    await engine._claim_once(100)

    assert sorted(run.fire_time for run in await world.store.list_runs(task.id)) == [
        at(0),
        at(10),
        at(20),
        at(30),
    ]
    await finish(engine)
    assert len(job.started) == 4
    stored = await world.store.get(task.id)
    assert stored is not None and stored.runs == 4
    assert await world.store.list_runs() == []


# -- max_instances -------------------------------------------------------------------------------


async def test_fire_creates_no_more_runs_than_max_instances_and_reports_the_rest(world: World) -> None:
    engine, job = world.engine(), world.job(gated=True)
    task = await world.add(job, misfire_grace_time=None, coalesce=False, max_instances=2)
    world.clock.advance(45)

    await engine._claim_once(100)

    runs = await world.store.list_runs(task.id)
    assert sorted(run.fire_time for run in runs) == [at(0), at(10)]
    assert world.fired(EventKind.MAX_INSTANCES) == [at(20), at(30), at(40)]


async def test_max_instances_holds_across_two_engines_sharing_a_store(world: World) -> None:
    first, second = world.engine("first"), world.engine("second")
    job = world.job(gated=True)
    task = await world.add(job, every=4, misfire_grace_time=None, max_instances=1)

    await first._claim_once(100)
    await settle()
    world.clock.advance(4)  # within the first run's lease (10 s)
    await second._claim_once(100)
    await settle()

    runs = await world.store.list_runs(task.id)
    assert [(run.fire_time, run.owner) for run in runs] == [(at(0), "first")]
    assert world.fired(EventKind.MAX_INSTANCES) == [at(4)]
    assert job.started == [at(0)]

    assert job.gate is not None
    job.gate.set()
    await finish(first)
    world.clock.advance(4)
    await second._claim_once(100)
    await settle()
    runs = await world.store.list_runs(task.id)
    assert [(run.fire_time, run.owner) for run in runs] == [(at(8), "second")]
    assert job.started == [at(0), at(8)]


# -- claim-ahead ---------------------------------------------------------------------------------


async def test_a_task_due_within_claim_ahead_is_claimed_early_and_starts_at_its_fire_time(
    world: World,
) -> None:
    engine = world.engine(claim_ahead=timedelta(seconds=2))
    soon, later = world.job(), world.job()
    task = await world.add(soon, first=at(1.5))
    await world.add(later, first=at(3))

    assert await engine._claim_once(100) == 1  # only the task due within 2 s
    await settle()

    [run] = await world.store.list_runs()
    assert (run.task_id, run.fire_time, run.owner) == (task.id, at(1.5), "a")
    assert soon.started == []
    assert world.clock.sleeps == [1.5]
    world.clock.advance(1.0)
    await settle()
    assert soon.started == []
    world.clock.advance(0.5)
    await settle()
    assert soon.started == [at(1.5)]
    assert later.started == []


async def test_claim_ahead_is_capped_at_a_quarter_of_the_lease(world: World) -> None:
    engine = world.engine(claim_ahead=timedelta(seconds=8))  # lease 10 s: at most 2.5 s ahead
    await world.add(world.job(), first=at(3))

    assert await engine._claim_once(100) == 0
    world.clock.advance(0.5)
    assert await engine._claim_once(100) == 1


async def test_a_task_claimed_ahead_while_its_last_run_still_runs_waits_for_its_fire_time(
    world: World,
) -> None:
    engine = world.engine(claim_ahead=timedelta(seconds=1))
    job = world.job(gated=True)
    task = await world.add(job, every=2, misfire_grace_time=None, max_instances=1)
    await engine._claim_once(100)  # the run of 0 s starts, and blocks
    await settle()

    world.clock.advance(1.5)  # the fire time of 2 s is within claim_ahead
    assert await engine._claim_once(100) == 1
    assert [run.fire_time for run in await world.store.list_runs(task.id)] == [at(0)]
    assert world.fired(EventKind.MAX_INSTANCES) == []  # not decided yet: the run may end in time
    world.clock.advance(0.25)
    assert await engine._claim_once(100) == 0  # held back: not claimed again before 2 s

    world.clock.advance(0.25)
    assert await engine._claim_once(100) == 1
    assert world.fired(EventKind.MAX_INSTANCES) == [at(2)]


# -- lease renewal -------------------------------------------------------------------------------


async def test_the_renew_step_extends_the_leases_of_runs_held(world: World) -> None:
    engine, job = world.engine(), world.job(gated=True)
    await world.add(job)
    await engine._claim_once(100)
    await settle()
    [run] = await world.store.list_runs()
    assert run.lease_until == at(10)

    world.clock.advance(5)
    assert await engine.renew_leases() == set()

    [run] = await world.store.list_runs()
    assert (run.owner, run.lease_until) == ("a", at(15))


async def test_a_run_whose_lease_another_owner_took_is_reported_lost(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    engine, job = world.engine(), world.job(gated=True)
    task = await world.add(job)
    await engine._claim_once(100)
    await settle()
    world.clock.advance(11)  # the lease ended without a renewal
    taken = await world.store.claim_due("thief", now=world.clock.now, lease=LEASE, limit=10)
    assert [run.recovered for run in taken.runs] == [True]

    with caplog.at_level(logging.WARNING, logger="backbeat.engine"):
        lost = await engine.renew_leases()
        assert job.gate is not None
        job.gate.set()
        await finish(engine)

    run_id = run_id_for(task.id, at(0))
    assert lost == {run_id}
    assert "lost the lease of runs" in caplog.text
    assert "finished after their lease passed to another instance" in caplog.text
    [run] = await world.store.list_runs()
    assert (run.id, run.owner, run.attempt) == (run_id, "thief", 2)  # the completion was refused


# -- retries -------------------------------------------------------------------------------------


async def test_a_failing_run_is_retried_after_its_policy_delay_then_dead_lettered(world: World) -> None:
    engine, job = world.engine(), world.job(error=ValueError("bad input"))
    retry = RetryPolicy(max_attempts=2, initial_delay=5, jitter=0).to_json()
    task = await world.add(job, every=None, retry=retry)

    await engine._claim_once(100)
    await finish(engine)
    [waiting] = await world.store.list_runs()
    assert (waiting.attempt, waiting.owner, waiting.lease_until) == (2, None, at(5))

    world.clock.advance(4.9)
    assert await engine._claim_once(100) == 0
    world.clock.advance(0.1)
    assert await engine._claim_once(100) == 1
    await finish(engine)

    assert job.started == [at(0), at(5)]
    [letter] = await world.store.dead_letters()
    assert (letter.id, letter.attempt, letter.error) == (
        run_id_for(task.id, at(0)),
        2,
        "ValueError: bad input",
    )
    assert await world.store.list_runs() == []
    assert await world.store.get(task.id) is None  # a one-shot task leaves with its last run


# -- stopping ------------------------------------------------------------------------------------


class SwallowsACancel(MemoryStore):
    """A store whose wake-up read turns the first cancel into "no message" and reads again, as
    a driver's pub/sub read with a timeout can (seen with redis-py), so nothing is yielded."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(lease_clock=clock)
        self.swallowed = 0

    async def wakeups(self) -> AsyncIterator[None]:
        while True:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                if self.swallowed:
                    raise
                self.swallowed += 1
                continue
            yield


async def test_stop_ends_the_wakeup_listener_even_when_its_read_swallows_a_cancel(world: World) -> None:
    world.store = SwallowsACancel(world.clock)
    engine = world.engine()
    await engine.start()
    await settle()

    async with asyncio.timeout(5):
        await engine.stop()

    assert world.store.swallowed == 1
    assert not engine.running


class CountsClaims(MemoryStore):
    def __init__(self, clock: FakeClock) -> None:
        super().__init__(lease_clock=clock)
        self.claims = 0

    async def claim_due(self, owner: str, **kwargs: Any) -> Any:
        self.claims += 1
        return await super().claim_due(owner, **kwargs)


async def test_an_add_due_after_the_sleeping_claim_loop_looks_anyway_does_not_wake_it(world: World) -> None:
    world.store = store = CountsClaims(world.clock)
    engine = world.engine(poll_interval=60)  # nothing stored: it sleeps a poll interval
    await engine.start()
    await settle()
    claims = store.claims

    engine.notify(at(61))  # it looks at 60 s: a task due at 61 s is claimed then
    await settle()
    assert store.claims == claims

    engine.notify(at(59))
    await settle()
    assert store.claims == claims + 1
    await engine.stop()


class GatedClaims(CountsClaims):
    """Claims that wait for ``gate`` (while it is set to an unset event), so a test can act while
    the claim loop is awake."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock)
        self.gate: asyncio.Event | None = None

    async def claim_due(self, owner: str, **kwargs: Any) -> Any:
        if self.gate is not None:
            await self.gate.wait()
        return await super().claim_due(owner, **kwargs)


async def test_adds_notified_while_the_claim_loop_is_awake_do_not_keep_it_claiming(world: World) -> None:
    world.store = store = GatedClaims(world.clock)
    engine = world.engine(poll_interval=60)
    await engine.start()
    await settle()
    store.gate = asyncio.Event()
    engine.notify(at(59))  # the sleeping loop wakes for it, and waits inside its claim
    await settle()
    claims = store.claims + 1  # that claim, once the gate opens

    for seconds in (70, 30, 40):  # not claimable yet: the loop is told, not woken
        engine.notify(at(seconds))
    store.gate.set()
    await settle()
    assert store.claims == claims

    # it sleeps until the earliest of them (30 s) is claimable, not a poll interval (60 s):
    engine.notify(at(31))  # later than it looks anyway
    await settle()
    assert store.claims == claims
    engine.notify(at(29))
    await settle()
    assert store.claims == claims + 1
    await engine.stop()


async def test_an_add_due_now_notified_while_the_claim_loop_is_awake_is_claimed_at_once(world: World) -> None:
    world.store = store = GatedClaims(world.clock)
    engine = world.engine(poll_interval=60)
    await engine.start()
    await settle()
    store.gate = asyncio.Event()
    engine.notify(at(59))
    await settle()
    claims = store.claims + 1

    engine.notify(at(0))
    store.gate.set()
    await settle()
    assert store.claims == claims + 1
    await engine.stop()


# -- overlap policies ----------------------------------------------------------------------------


async def history_of(world: World, engine: Engine, task: Task) -> list[tuple[str, datetime]]:
    await engine.history.flush(force=True)
    entries, _ = await world.store.run_history(HistoryQuery(task_id=task.id, limit=100))
    return sorted((entry.outcome.value, entry.fire_time) for entry in entries)


async def test_buffer_one_runs_the_kept_fire_time_after_the_running_one_and_skips_the_rest(
    world: World,
) -> None:
    first, second = world.engine("first"), world.engine("second")
    job = world.job(gated=True)
    task = await world.add(job, every=4, misfire_grace_time=None, overlap="buffer_one")

    await first._claim_once(100)
    await settle()
    world.clock.advance(4)
    await second._claim_once(100)  # kept behind the running run
    world.clock.advance(4)
    await second._claim_once(100)  # one is kept already: skipped
    await settle()
    runs = await world.store.list_runs(task.id)
    assert sorted((run.fire_time, run.owner, run.buffered) for run in runs) == [
        (at(0), "first", False),
        (at(4), None, True),
    ]
    assert world.fired(EventKind.RUN_SKIPPED) == [at(8)] and world.fired(EventKind.MAX_INSTANCES) == []
    assert job.started == [at(0)]

    assert job.gate is not None
    job.gate.set()
    await finish(first)
    await second._claim_once(100)
    await finish(second)
    assert job.started == [at(0), at(8)]  # the kept fire time (4) ran when the first ended, at 8
    await first.history.flush(force=True)
    assert await history_of(world, second, task) == [
        ("skipped", at(8)),
        ("success", at(0)),
        ("success", at(4)),
    ]
    assert [(run.fire_time, run.owner) for run in await world.store.list_runs(task.id)] == []


async def test_cancel_other_cancels_the_run_in_another_engine_and_then_runs_the_new_one(world: World) -> None:
    first, second = world.engine("first"), world.engine("second")
    job = world.job(gated=True)
    task = await world.add(job, every=4, misfire_grace_time=None, overlap="cancel_other")
    await first._claim_once(100)
    await settle()
    world.clock.advance(4)
    await second._claim_once(100)  # buffered, and a cancel request for the first's run
    await settle()
    assert job.started == [at(0)]
    assert [run.fire_time for run in await world.store.list_runs(task.id) if run.buffered] == [at(4)]

    await first.renew_leases()  # the first sees the request at its next renewal
    await finish(first)
    job.gate = None
    await second._claim_once(100)
    await finish(second)
    assert job.started == [at(0), at(4)]
    await first.history.flush(force=True)
    assert await history_of(world, second, task) == [("cancelled", at(0)), ("success", at(4))]
    assert await world.store.list_runs(task.id) == []


async def test_cancel_other_cancels_a_run_of_the_same_engine_at_once(world: World) -> None:
    engine, job = world.engine(), world.job(gated=True)
    task = await world.add(job, every=4, misfire_grace_time=None, overlap="cancel_other")
    await engine._claim_once(100)
    await settle()
    world.clock.advance(4)
    await engine._claim_once(100)
    await settle()
    await finish(engine)  # cancelled without a lease renewal
    job.gate = None
    await engine._claim_once(100)
    await finish(engine)
    assert job.started == [at(0), at(4)]
    assert await history_of(world, engine, task) == [("cancelled", at(0)), ("success", at(4))]


async def test_cancel_other_catching_up_runs_only_the_latest_fire_time(world: World) -> None:
    engine, job = world.engine(), world.job()
    task = await world.add(job, every=4, misfire_grace_time=None, coalesce=False, overlap="cancel_other")
    world.clock.advance(9)  # fire times 0, 4 and 8 are due
    await engine._claim_once(100)
    await finish(engine)
    assert job.started == [at(9)] and world.fired(EventKind.RUN_SKIPPED) == [at(0), at(4)]
    assert await history_of(world, engine, task) == [
        ("skipped", at(0)),
        ("skipped", at(4)),
        ("success", at(8)),
    ]


class LosesEveryClaim(MemoryStore):
    """A store whose ``fire`` finds every claim taken by another owner meanwhile."""

    async def fire(self, owner: str, decisions: Any, *, now: datetime, lease: timedelta) -> list[Any]:
        return []


async def test_fire_times_of_a_claim_lost_before_the_fire_are_left_for_the_next_claimer_to_report() -> None:
    clock = FakeClock(T0)
    world = World(clock=clock)
    world.store = LosesEveryClaim(lease_clock=clock)
    engine, job = world.engine(), world.job()
    await world.add(job, misfire_grace_time=1, coalesce=False)
    world.clock.advance(35.5)
    await engine._claim_once(100)
    assert world.fired(EventKind.RUN_MISSED) == [] and job.started == []


async def test_cancel_other_of_a_task_added_again_leaves_the_run_of_the_removed_one_going(
    world: World,
) -> None:
    engine, old_job, new_job = world.engine(), world.job(gated=True), world.job(gated=True)
    old = await world.add(old_job, every=4, overlap="cancel_other", misfire_grace_time=None)
    await engine._claim_once(100)
    await settle()
    assert await world.store.remove([old.id]) == [old.id]
    await world.add(
        new_job, first=at(4), every=4, task_id=old.id, overlap="cancel_other", misfire_grace_time=None
    )
    for _ in range(2):  # the new task's first run at 4 s, then a fire time at 8 s that cancels it
        world.clock.advance(4)
        await engine._claim_once(100)
        await settle()

    assert (old_job.started, new_job.started) == ([at(0)], [at(4)])
    assert {run.fire_time for run in engine.active_runs()} == {at(0)}  # its own run was cancelled
    assert old_job.gate is not None
    old_job.gate.set()
    await finish(engine)
    await engine.history.flush(force=True)
    entries, _ = await world.store.run_history(HistoryQuery(task_id=old.id))
    assert sorted((entry.fire_time, entry.outcome.value) for entry in entries) == [
        (at(0), "success"),
        (at(4), "cancelled"),
    ]


async def test_a_run_cancelled_before_its_first_step_is_completed_as_cancelled(world: World) -> None:
    # dispatched, then cancelled before its task's first step: none of the job runs, and the run
    # ends (completed, recorded) instead of staying among the active runs, its lease renewed for ever
    engine, job = world.engine(), world.job()
    task = await world.add(job, every=None)
    claim = await engine.store.claim_due(engine.owner, now=T0, lease=engine.config.lease, limit=10)
    [run] = await engine._fire(claim.tasks, T0)
    engine._dispatch(run)
    assert engine.cancel(run.id)
    await settle()
    assert job.started == [] and engine.active_runs() == []
    await engine.completions.drain()
    assert await history_of(world, engine, task) == [("cancelled", at(0))]


# -- run hooks -----------------------------------------------------------------------------------


async def test_a_run_hook_sees_a_job_that_fails_as_it_is_called(world: World) -> None:
    seen: list[str] = []

    @contextlib.contextmanager
    def hook(task: Task, run: Run) -> Iterator[None]:
        seen.append("entered")
        try:
            yield
        except Exception as exc:
            seen.append(type(exc).__name__)
            raise

    engine = Engine(
        world.store,
        world.registry,
        {"default": AsyncIOExecutor()},
        EventHub(),
        EngineConfig(owner="a", lease=LEASE),
        clock=world.clock,
        sleep=world.clock.sleep,
        run_hooks=[hook],
    )
    world.engines.append(engine)
    trigger = make_trigger_spec("date", run_date=T0, now=T0)
    job = world._wrap(world.job())
    task = from_callable(world.registry, job, trigger=trigger, options=TaskOptions(), now=T0).task
    task.next_run_time = T0
    task.args = ["gone"]  # stored with an argument its job no longer takes (a deploy changed it)
    await world.store.add([task])

    assert await engine._claim_once(100) == 1
    await finish(engine)

    assert seen == ["entered", "TypeError"]


# -- completions the store refuses ---------------------------------------------------------------


class RefusingStore(MemoryStore):
    """A memory store that refuses (``StoreError``) every completion holding a run of a task in
    ``refused``, as a store refuses a record it cannot read or a value it cannot encode."""

    refused: set[str]

    async def complete(self, owner: str, results: Sequence[RunResult], **options: Any) -> set[str]:
        if any(result.run.task_id in self.refused for result in results):
            raise StoreError("refused")
        return await super().complete(owner, results, **options)


def refusing(world: World, *task_ids: str) -> RefusingStore:
    world.store = store = RefusingStore(lease_clock=world.clock)
    store.refused = set(task_ids)
    return store


async def next_round(world: World, engine: Engine) -> None:
    """A second on, the recurring tasks fire and their runs end; a second more, and the drain
    (backing off less than that after a completion) tries again."""
    world.clock.advance(1)
    await engine._claim_once(100)
    await settle()
    world.clock.advance(1)
    await settle()


async def test_a_result_the_store_keeps_refusing_holds_back_no_other_and_is_set_aside(world: World) -> None:
    store = refusing(world, "poison")
    engine = world.engine()
    good = await world.add(world.job(), every=1)
    poison = await world.add(world.job(), every=None, task_id="poison")
    await engine._claim_once(100)
    await settle()

    drain = asyncio.create_task(engine.completions.drain())
    await settle()
    stored = await store.get(good.id)
    assert stored is not None and stored.runs == 1  # completed one by one, without the refused result
    await next_round(world, engine)
    assert not drain.done()  # refused twice: the result may still be the store's trouble
    await next_round(world, engine)

    async with asyncio.timeout(5):
        await drain  # refused a third time while another completed: set aside
    stored = await store.get(good.id)
    assert stored is not None and stored.runs == 3
    assert engine.completions.pending == {}
    # not completed: its run stays leased until the lease runs out and it is taken over
    assert [run.owner for run in await store.list_runs(poison.id)] == ["a"]
    set_aside = [event for event in world.events if event.kind == EventKind.STORE_ERROR and event.run_id]
    assert [(event.task_id, event.fire_time) for event in set_aside] == [("poison", T0)]


async def test_a_result_refused_in_quick_succession_is_not_set_aside_before_the_span(world: World) -> None:
    store = refusing(world, "poison")
    engine = world.engine()
    good = await world.add(world.job(), every=0.25, max_instances=10)
    await world.add(world.job(), every=None, task_id="poison")
    await engine._claim_once(100)
    await settle()
    drain = asyncio.create_task(engine.completions.drain())
    await settle()
    for _ in range(3):  # three more refusals while others complete, within 1.35 s
        world.clock.advance(0.25)
        await engine._claim_once(100)
        await settle()
        world.clock.advance(0.2)  # past the drain's back-off, which a lone refusal doubled
        await settle()
    stored = await store.get(good.id)
    assert stored is not None and stored.runs == 4
    assert not drain.done()  # refused 4 times, but within POISON_SPAN: maybe a refusal that passes

    await next_round(world, engine)  # 2 s on: past POISON_SPAN
    async with asyncio.timeout(5):
        await drain
    assert engine.completions.pending == {}


async def test_refusals_while_nothing_completes_set_nothing_aside(world: World) -> None:
    store = refusing(world, "poison", "other")
    engine = world.engine()
    other = await world.add(world.job(), every=1, task_id="other")
    await world.add(world.job(), every=None, task_id="poison")
    await engine._claim_once(100)
    await settle()

    drain = asyncio.create_task(engine.completions.drain())
    for _ in range(4):  # the store refuses everything: its own trouble, not a result's (8 s < LEASE)
        await next_round(world, engine)
    assert not drain.done()
    assert {result.run.task_id for result in engine.completions.pending.values()} == {"poison", "other"}

    store.refused.clear()
    world.clock.advance(5)  # the longest back-off (``store_retry_max``)
    async with asyncio.timeout(5):
        await drain
    assert engine.completions.pending == {}
    assert await store.list_runs() == []
    stored = await store.get(other.id)
    assert stored is not None and stored.runs == 1  # its later fire times overlapped the one refused
    assert not [event for event in world.events if event.kind == EventKind.STORE_ERROR and event.run_id]
