"""The engine's steps on the memory store, by a fake clock: misfire, coalesce, max_instances,
claim-ahead, lease renewal. No test waits for real time to pass."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from tests.fakes import FakeClock, settle

from backbeat.api.taskbuild import from_callable
from backbeat.engine.completion import stripped
from backbeat.engine.loop import Engine, EngineConfig
from backbeat.errors import StoreError, StoreUnavailableError
from backbeat.executors import AsyncIOExecutor
from backbeat.model.events import EventHub, EventKind, SchedulerEvent
from backbeat.model.history import HistoryQuery
from backbeat.model.records import Run, RunOutcome, RunResult, Task, TaskOptions, run_id_for
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

    def monotonic(self) -> float:
        """Seconds since T0 by the fake clock: an engine's lease deadlines by it (``engine(...,
        fake_deadlines=True)``) pass as the store's leases do."""
        return (self.clock.now - T0).total_seconds()

    def engine(self, owner: str = "a", *, fake_deadlines: bool = False, **config: Any) -> Engine:
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
            monotonic=self.monotonic if fake_deadlines else None,
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
    # not fenced (as a thread-pool job, which cannot be stopped), its deadline passed here too
    engine, job = world.engine(fake_deadlines=True, fencing=False), world.job(gated=True)
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


async def test_a_late_finisher_of_a_run_a_takeover_already_completed_warns_and_records_its_entry(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    # the fire time ran twice (here past the lease, and by the thief): gone from the store, the
    # run is not this completion's to take, and the second execution must not go unseen
    engine, job = world.engine(fake_deadlines=True, fencing=False), world.job(gated=True)
    task = await world.add(job, every=None)
    await engine._claim_once(100)
    await settle()
    world.clock.advance(11)  # the lease ended without a renewal
    [taken] = (await world.store.claim_due("thief", now=world.clock.now, lease=LEASE, limit=10)).runs
    done = RunResult(run=taken, outcome=RunOutcome.SUCCESS, finished_at=world.clock.now)
    assert await world.store.complete("thief", [done]) == set()

    with caplog.at_level(logging.WARNING, logger="backbeat.engine"):
        assert job.gate is not None
        job.gate.set()
        await finish(engine)

    assert "finished after their lease passed to another instance" in caplog.text
    await engine.history.flush(force=True)
    entries, _ = await world.store.run_history(HistoryQuery(task_id=task.id))
    assert [(entry.owner, entry.outcome.value) for entry in entries] == [("a", "success")]


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


# -- the next claim sent early ------------------------------------------------------------------


class LogsCalls(MemoryStore):
    """Logs claims (their limits), fires (their decisions) and completions (their results) in
    the order they are sent, and counts what the claims took; fires wait for ``fire_gate``
    while it is set to an unset event, and so do the replies of the claims after the first
    ``answered`` for ``reply_gate`` (what they take is taken: their replies are in flight)."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(lease_clock=clock)
        self.calls: list[tuple[str, int]] = []
        self.taken = 0
        self.fire_gate: asyncio.Event | None = None
        self.reply_gate: asyncio.Event | None = None
        self.answered = 0

    async def claim_due(self, owner: str, **kwargs: Any) -> Any:
        self.calls.append(("claim", kwargs["limit"]))
        claim = await super().claim_due(owner, **kwargs)
        self.taken += len(claim.tasks) + len(claim.runs)
        if self.reply_gate is not None and len([c for c in self.calls if c[0] == "claim"]) > self.answered:
            await self.reply_gate.wait()
        return claim

    async def fire(self, owner: str, decisions: Sequence[Any], **kwargs: Any) -> Any:
        self.calls.append(("fire", len(decisions)))
        if self.fire_gate is not None:
            await self.fire_gate.wait()
        return await super().fire(owner, decisions, **kwargs)

    async def complete(self, owner: str, results: Sequence[RunResult], **kwargs: Any) -> set[str]:
        self.calls.append(("complete", len(results)))
        return await super().complete(owner, results, **kwargs)


async def test_after_a_full_claim_the_next_one_is_sent_before_its_batch_is_fired(world: World) -> None:
    world.store = store = LogsCalls(world.clock)
    job = world.job()
    for i in range(5):
        await world.add(job, every=None, task_id=f"t{i}")
    engine = world.engine(batch_size=2, poll_interval=60)
    await engine.start()
    await settle()

    # the store takes the next claim while the client decides and fires the batch (the claims
    # after these are the completions' wake-ups)
    sent = [("claim", 2), ("claim", 2), ("fire", 2), ("claim", 2), ("fire", 2), ("fire", 1)]
    assert store.calls[:6] == sent
    assert len(job.started) == 5
    await engine.stop()


async def test_a_completion_is_sent_after_the_claim_and_fire_its_runs_made_room_for(world: World) -> None:
    world.store = store = LogsCalls(world.clock)
    job = world.job()
    for i in range(6):
        await world.add(job, every=None, task_id=f"t{i}")
    engine = world.engine(batch_size=2, max_concurrency=4, poll_interval=60)
    await engine.start()
    await settle()

    # the first batch's runs end before the third claim is sent (it had no room before): its
    # completion goes after that claim and the second batch's fire, whose reply starts runs
    sent = [("claim", 2), ("claim", 2), ("fire", 2), ("claim", 2), ("fire", 2), ("complete", 2)]
    assert store.calls[:6] == sent
    assert len(job.started) == 6
    await engine.stop()


async def test_the_next_claim_sent_early_takes_no_more_than_the_process_can_start_besides_the_batch(
    world: World,
) -> None:
    world.store = store = LogsCalls(world.clock)
    job = world.job(gated=True)
    for i in range(6):
        await world.add(job, every=None, task_id=f"t{i}")
    engine = world.engine(batch_size=2, max_concurrency=3, poll_interval=60)
    await engine.start()
    await settle()

    assert store.calls == [("claim", 2), ("claim", 1), ("fire", 2), ("fire", 1)]
    assert (store.taken, len(engine._active), len(job.started)) == (3, 3, 3)
    assert job.gate is not None
    job.gate.set()
    await engine.stop()


async def test_stop_gives_back_what_the_next_claim_sent_early_took_and_the_batch_cut_off_in_its_fire(
    world: World,
) -> None:
    world.store = store = LogsCalls(world.clock)
    job = world.job()
    for i in range(2):
        await world.add(job, every=None, task_id=f"t{i}")
    store.fire_gate = asyncio.Event()  # the first batch's fire waits: the next claim has taken t1
    engine = world.engine(batch_size=1, poll_interval=60)
    await engine.start()
    await settle()
    assert store.calls == [("claim", 1), ("claim", 1), ("fire", 1)]

    async with asyncio.timeout(5):
        await engine.stop()

    store.fire_gate = None
    other = world.engine("b")
    assert await other._claim_once(100) == 2  # t1 and t0 at once, not after their claims' lease
    await finish(other)
    assert len(job.started) == 2


async def test_stop_waits_for_the_next_claim_in_flight_and_gives_back_what_it_took(world: World) -> None:
    world.store = store = LogsCalls(world.clock)
    job = world.job()
    for i in range(2):
        await world.add(job, every=None, task_id=f"t{i}")
    store.reply_gate, store.answered = asyncio.Event(), 1  # the next claim takes t1, its reply waits
    engine = world.engine(batch_size=1, poll_interval=60)
    await engine.start()
    await settle()
    assert store.calls[:3] == [("claim", 1), ("claim", 1), ("fire", 1)] and store.taken == 2

    stopping = asyncio.get_running_loop().create_task(engine.stop())
    await settle()
    store.reply_gate.set()  # the reply comes while the engine stops
    async with asyncio.timeout(5):
        await stopping

    other = world.engine("b")
    assert await other._claim_once(100) == 1  # t1 at once, not after its claim's lease
    await finish(other)
    assert len(job.started) == 2


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
    [run] = await engine._fire(claim.tasks, T0, room=0)
    engine._dispatch(run)
    assert engine.cancel(run.id)
    await settle()
    assert job.started == [] and engine.active_runs() == []
    await engine.completions.drain()
    assert await history_of(world, engine, task) == [("cancelled", at(0))]


class _Ended(asyncio.Future[None]):
    """What an eager task factory returns for a coroutine that ended in its first step."""

    def set_name(self, name: str) -> None:
        pass


def _eager_runs(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Future[Any]:
    """A task factory that runs a run's ``_execute`` up to its first suspension at once, as
    ``asyncio.eager_task_factory`` does (Python 3.12 on): here one that never suspends."""
    if getattr(coro, "__qualname__", "") != "Engine._execute":
        return asyncio.Task(coro, loop=loop, **kwargs)
    try:
        coro.send(None)
    except StopIteration:
        ended = _Ended(loop=loop)
        ended.set_result(None)
        return ended
    raise AssertionError("the run suspended: the test wants one that does not")


async def test_a_run_an_eager_task_factory_ends_at_once_is_not_left_active(world: World) -> None:
    # an eager task factory runs the run to its end inside create_task: _finish took it out of
    # the active runs before _dispatch put it in, and it stayed there, holding a slot of
    # max_concurrency
    engine = world.engine()

    async def instant() -> None:
        return None

    trigger = make_trigger_spec("date", run_date=T0, now=T0)
    task = from_callable(world.registry, instant, trigger=trigger, options=TaskOptions(), now=T0).task
    task.next_run_time = T0
    await world.store.add([task])
    loop = asyncio.get_running_loop()
    loop.set_task_factory(_eager_runs)
    try:
        assert await engine._claim_once(100) == 1
    finally:
        loop.set_task_factory(None)

    assert engine._active == {}
    assert [result.outcome for result in engine.completions.pending.values()] == [RunOutcome.SUCCESS]
    await engine.completions.drain()
    assert await world.store.list_runs() == []


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
    """A memory store that refuses (``StoreError``) every completion holding a stored run of a
    task in ``refused``, as a store refuses a record it cannot read or a value it cannot encode;
    while ``down``, every completion and renewal, as a store refusing writes does."""

    refused: set[str]
    down = False
    refused_text: str | None = None
    """Also refuse a result whose error holds this (a value the store cannot encode)."""
    quarantined_ids: list[str]

    async def complete(self, owner: str, results: Sequence[RunResult], **options: Any) -> set[str]:
        if self.down or any(self._refuses(result) for result in results):
            raise StoreError("refused")
        return await super().complete(owner, results, **options)

    def _refuses(self, result: RunResult) -> bool:
        text = self.refused_text
        if text is not None and text in (result.error or ""):
            return True
        return result.run.task_id in self.refused and result.run.id in self._runs

    quarantine_outages = 0
    """Quarantines that raise ``StoreUnavailableError`` before one goes through."""

    async def quarantine(self, task_id: str, error: str) -> bool:
        if self.quarantine_outages:
            self.quarantine_outages -= 1
            raise StoreUnavailableError("connection lost")
        self.quarantined_ids.append(task_id)
        return True

    async def extend(self, owner: str, leases: Mapping[str, int], **options: Any) -> set[str]:
        if self.down:
            raise StoreError("refused")
        return await super().extend(owner, leases, **options)


def refusing(world: World, *task_ids: str) -> RefusingStore:
    world.store = store = RefusingStore(lease_clock=world.clock)
    store.refused = set(task_ids)
    store.quarantined_ids = []
    return store


async def until_done(world: World, drain: asyncio.Task[None], seconds: int = 120) -> None:
    """Move the clock a second at a time until ``drain`` ended (its back-off grows to 5-10 s)."""
    for _ in range(seconds):
        if drain.done():
            break
        world.clock.advance(1)
        await settle()
    async with asyncio.timeout(5):
        await drain


def store_errors(world: World) -> list[str | None]:
    """The task ids of the STORE_ERROR events naming a run."""
    return [event.task_id for event in world.events if event.kind == EventKind.STORE_ERROR and event.run_id]


async def next_round(world: World, engine: Engine) -> None:
    """A second on, the recurring tasks fire and their runs end; a second more, and the drain
    (backing off less than that after a completion) tries again."""
    world.clock.advance(1)
    await engine._claim_once(100)
    await settle()
    world.clock.advance(1)
    await settle()


async def test_a_run_the_store_cannot_complete_holds_back_no_other_and_its_task_is_quarantined(
    world: World,
) -> None:
    store = refusing(world, "poison")  # refuses any result of its run: a record it cannot read
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
    assert not drain.done()  # the store may still be in trouble: refused, but not for 2 s yet
    assert store.quarantined_ids == []
    for _ in range(5):
        if drain.done():
            break
        await next_round(world, engine)

    async with asyncio.timeout(5):
        await drain  # refused 3 times over 2 s, stripped, refused so again: given up
    stored = await store.get(good.id)
    assert stored is not None and stored.runs >= 3
    assert engine.completions.pending == {}
    assert store.quarantined_ids == ["poison"]  # no worker runs it again, for ever
    # not completed: its run stays leased until the lease runs out and it is taken over
    assert [run.owner for run in await store.list_runs(poison.id)] == ["a"]
    assert store_errors(world) == ["poison", "poison"]  # stripped, then given up


async def test_a_quarantine_the_store_cannot_take_for_an_outage_keeps_the_result_and_is_tried_again(
    world: World,
) -> None:
    # set aside without its task quarantined, the run would be taken over and run again
    store = refusing(world, "poison")
    store.quarantine_outages = 1
    engine = world.engine()
    await world.add(world.job(), every=1)
    poison = await world.add(world.job(), every=None, task_id="poison")
    await engine._claim_once(100)
    await settle()
    drain = asyncio.create_task(engine.completions.drain())
    for _ in range(30):
        if store.quarantine_outages == 0:
            break
        await next_round(world, engine)
    assert store.quarantine_outages == 0 and store.quarantined_ids == []
    assert [result.run.task_id for result in engine.completions.pending.values()] == ["poison"]  # kept

    for _ in range(30):
        if drain.done():
            break
        await next_round(world, engine)
    async with asyncio.timeout(5):
        await drain
    assert store.quarantined_ids == ["poison"] and engine.completions.pending == {}
    assert [run.owner for run in await store.list_runs(poison.id)] == ["a"]


async def test_a_result_the_store_cannot_take_completes_its_run_as_a_bare_failure(world: World) -> None:
    # a value the store cannot encode, in the error; another result completes beside it once
    store = refusing(world)
    store.refused_text = "\x00"
    engine = world.engine()
    retry = RetryPolicy(max_attempts=1, jitter=0).to_json()
    task = await world.add(world.job(error=ValueError("a NUL \x00 byte")), every=None, retry=retry)
    await world.add(world.job(), every=None, task_id="other")
    await engine._claim_once(100)
    await settle()

    await until_done(world, asyncio.create_task(engine.completions.drain()))

    assert await store.list_runs() == [] and store.quarantined_ids == []
    [letter] = await store.dead_letters()
    assert letter.task_id == task.id and letter.traceback is None
    assert letter.error is not None and letter.error.startswith(
        "StoreError: the store refused this run's failure"
    )
    assert letter.error_type == "backbeat.errors.StoreError"
    assert store_errors(world) == [task.id]


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

    await next_round(world, engine)  # 2 s on: past POISON_SPAN, stripped
    assert store_errors(world) == ["poison"]
    await until_done(world, drain)  # and given up 2 s later at least
    assert engine.completions.pending == {}


async def test_refusals_while_nothing_completes_set_nothing_aside(world: World) -> None:
    store = refusing(world)
    store.down = True
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

    store.down = False
    await until_done(world, drain)  # a back-off of up to 2 x ``store_retry_max`` (10 s) away
    assert engine.completions.pending == {}
    assert await store.list_runs() == []
    stored = await store.get(other.id)
    assert stored is not None and stored.runs == 1  # its later fire times overlapped the one refused
    assert not [event for event in world.events if event.kind == EventKind.STORE_ERROR and event.run_id]


class ReplyLosingStore(MemoryStore):
    """A memory store that completes the first batch it is sent, then raises as a connection
    lost before the reply came back would."""

    replies_lost = 1

    async def complete(self, owner: str, results: Sequence[RunResult], **options: Any) -> set[str]:
        lost = await super().complete(owner, results, **options)
        if self.replies_lost:
            self.replies_lost -= 1
            raise StoreUnavailableError("connection lost")
        return lost


async def test_a_completion_sent_again_after_a_lost_reply_reports_no_lost_run(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    world.store = store = ReplyLosingStore(lease_clock=world.clock)
    engine = world.engine()
    await world.add(world.job(), every=None, task_id="done")
    retry = RetryPolicy(max_attempts=3, initial_delay=5, jitter=0).to_json()
    await world.add(world.job(error=ValueError("again")), every=None, task_id="retried", retry=retry)
    await engine._claim_once(100)
    await settle()

    with caplog.at_level(logging.WARNING, logger="backbeat.engine"):
        drain = asyncio.create_task(engine.completions.drain())
        await settle()
        world.clock.advance(1)  # past the back-off: sent again
        async with asyncio.timeout(5):
            await drain

    assert store.replies_lost == 0 and engine.completions.pending == {}
    assert [run.task_id for run in await store.list_runs()] == ["retried"]  # re-queued once
    assert "after their lease passed" not in caplog.text


async def test_a_lone_result_refused_on_a_quiet_worker_is_given_up_once_others_complete_not_while_down(
    world: World,
) -> None:
    # nothing else completes here at first: the store answering a probe tells its refusal from an
    # outage, and a result completing meanwhile shows it takes real ones
    store = refusing(world, "poison")
    store.down = True
    engine = world.engine()
    poison = await world.add(world.job(), every=None, task_id="poison")
    await engine._claim_once(100)
    await settle()
    drain = asyncio.create_task(engine.completions.drain())
    for _ in range(60):  # a minute of refusals while the store refuses writes: it is down, retried
        world.clock.advance(1)
        await settle()
    assert not drain.done() and store_errors(world) == []

    store.down = False  # up, and refusing this run's completion only
    for _ in range(60):  # answering probes: counted, but nothing else completed here yet
        world.clock.advance(1)
        await settle()
    assert not drain.done() and store_errors(world) == []

    await another_completes(world, engine, "witness-1")
    assert store_errors(world) == ["poison"]  # stripped at once: refused long enough already
    await another_completes(world, engine, "witness-2")
    await until_done(world, drain)
    assert engine.completions.pending == {}
    assert store.quarantined_ids == ["poison"]
    assert [run.owner for run in await store.list_runs(poison.id)] == ["a"]  # left to its lease
    assert store_errors(world) == ["poison", "poison"]


async def another_completes(world: World, engine: Engine, task_id: str) -> None:
    """A one-shot task due now runs here and its result joins the drain, which takes it (past a
    back-off of 10 s at most)."""
    await world.add(world.job(), first=world.clock.now, every=None, task_id=task_id)
    await engine._claim_once(100)
    await settle()
    for _ in range(10):
        world.clock.advance(1)
        await settle()
    assert await world.store.get(task_id) is None


async def test_a_store_refusing_every_real_completion_strips_and_quarantines_nothing(world: World) -> None:
    # a completion path broken for real data (a history table gone, a script failing on every
    # real record) answers the probe: without a result completing, nothing is the result's
    store = refusing(world, "one", "two")
    engine = world.engine()
    await world.add(world.job(), every=None, task_id="one")
    await world.add(world.job(), every=None, task_id="two")
    await engine._claim_once(100)
    await settle()
    drain = asyncio.create_task(engine.completions.drain())
    for _ in range(120):
        world.clock.advance(1)
        await settle()
    assert not drain.done() and store_errors(world) == [] and store.quarantined_ids == []
    assert {result.outcome for result in engine.completions.pending.values()} == {RunOutcome.SUCCESS}

    store.refused.clear()  # mended: the results as they were
    await until_done(world, drain)
    assert await store.list_runs() == [] and await store.dead_letters() == []


def test_a_stripped_deferral_stays_a_deferral_and_keeps_its_fire_time() -> None:
    # a run kept unrun (its task quarantined, its breaker open) must not become a dead letter,
    # which would drop the fire time its deferral keeps
    run = Run(id=run_id_for("t", T0), task_id="t", fire_time=T0, lease_until=T0)
    deferred = RunResult(
        run=run,
        outcome=RunOutcome.DEFERRED,
        finished_at=T0,
        error="its task record cannot be read",
        retry_at=at(60),
    )
    bare = stripped(deferred, StoreError("refused"))
    assert (bare.outcome, bare.retry_at, bare.dead_letter) == (RunOutcome.DEFERRED, at(60), False)
    assert bare.error == "StoreError: the store refused this run's deferral (StoreError: refused)"
