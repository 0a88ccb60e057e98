"""Catch-up after downtime, by a fake clock: fire times inside ``catchup_window`` run (each, or
coalesced into the latest), older ones are recorded missed, coalesced ones are recorded too."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from tests.fakes import FakeClock, settle

from backbeat.api.config import task_options
from backbeat.api.taskbuild import from_callable
from backbeat.engine.catchup import split_due
from backbeat.engine.loop import Engine, EngineConfig
from backbeat.errors import ConfigurationError
from backbeat.executors import AsyncIOExecutor
from backbeat.model.events import EventHub, EventKind, SchedulerEvent
from backbeat.model.history import HistoryOutcome, HistoryQuery
from backbeat.model.records import Task
from backbeat.model.registry import JobRegistry
from backbeat.model.triggers import make_trigger_spec
from backbeat.stores.memory import MemoryStore

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


class World:
    def __init__(self, *, max_concurrency: int = 1000) -> None:
        self.clock = FakeClock(T0)
        self.store = MemoryStore(lease_clock=self.clock)
        self.registry = JobRegistry()
        self.events: list[SchedulerEvent] = []
        self.started: list[datetime] = []
        hub = EventHub()
        hub.add_listener(self.events.append)
        self.engine = Engine(
            self.store,
            self.registry,
            {"default": AsyncIOExecutor()},
            hub,
            EngineConfig(owner="a", lease=timedelta(seconds=10), max_concurrency=max_concurrency),
            clock=self.clock,
            sleep=self.clock.sleep,
        )

    async def add(self, **options: Any) -> Task:
        """A task every 10 s from T0, its options as a user gives them (``catchup_window`` too)."""

        async def job() -> None:
            self.started.append(self.clock.now)

        trigger = make_trigger_spec("interval", seconds=10, start_date=T0, now=T0)
        task = from_callable(
            self.registry, job, trigger=trigger, options=task_options({}, options), now=T0
        ).task
        task.next_run_time = T0
        await self.store.add([task])
        return task

    async def after_downtime(self, seconds: float) -> None:
        """Nothing ran for ``seconds``; then one claim, its runs run and everything is written."""
        self.clock.advance(seconds)
        await self.engine._claim_once(100)
        await settle()
        async with asyncio.timeout(5):
            await asyncio.gather(*(task for _, task in self.engine._active.values()))
        await self.engine.completions.drain()
        await self.engine.history.flush(force=True)

    def fired(self, kind: EventKind) -> list[datetime | None]:
        return [event.fire_time for event in self.events if event.kind == kind]

    async def history(self, outcome: HistoryOutcome) -> list[datetime]:
        entries, _ = await self.store.run_history(HistoryQuery(limit=1000, outcomes=frozenset({outcome})))
        return sorted(entry.fire_time for entry in entries)


@pytest.fixture
async def world() -> World:
    return World()


# -- the rule ------------------------------------------------------------------------------------


def test_the_window_is_applied_before_coalescing() -> None:
    due = [at(0), at(10), at(20), at(30)]

    split = split_due(due, at(35), window=20, coalesce=True)

    assert (split.missed, split.coalesced, split.run) == ([at(0), at(10)], [at(20)], [at(30)])


def test_without_coalesce_each_fire_time_inside_the_window_runs() -> None:
    split = split_due([at(0), at(10), at(20)], at(25), window=10, coalesce=False)

    assert (split.missed, split.coalesced, split.run) == ([at(0), at(10)], (), [at(20)])


def test_no_window_runs_everything_and_a_window_passed_by_all_misses_everything() -> None:
    due = [at(0), at(10)]
    assert split_due(due, at(1000), window=None, coalesce=False).run == due
    assert split_due(due, at(1000), window=5, coalesce=True).missed == due


# -- the option ----------------------------------------------------------------------------------


def test_catchup_window_is_the_misfire_grace_time_in_seconds() -> None:
    assert task_options({}, {"catchup_window": timedelta(minutes=5)}).misfire_grace_time == 300
    assert task_options({}, {"catchup_window": 90}).misfire_grace_time == 90
    assert task_options({}, {"catchup_window": None}).misfire_grace_time is None


def test_a_task_catchup_window_wins_over_the_default_grace_time_and_the_other_way_round() -> None:
    grace: dict[str, Any] = {"misfire_grace_time": 1}
    assert task_options(grace, {"catchup_window": timedelta(hours=1)}).misfire_grace_time == 3600
    window: dict[str, Any] = {"catchup_window": timedelta(hours=1)}
    assert task_options(window).misfire_grace_time == 3600
    assert task_options(window, {"misfire_grace_time": 5}).misfire_grace_time == 5


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"catchup_window": 60, "misfire_grace_time": 60}, "both catchup_window and misfire_grace_time"),
        ({"catchup_window": "1h"}, "catchup_window must be a timedelta, seconds or None, not str"),
        ({"catchup_window": True}, "not bool"),
        ({"catchup_window": timedelta(seconds=-1)}, "catchup_window must be >= 0"),
        ({"catchup_window": float("nan")}, "catchup_window must be >= 0"),
    ],
)
def test_a_bad_catchup_window_is_refused_naming_it(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        task_options({}, options)


# -- after downtime --------------------------------------------------------------------------


async def test_fire_times_inside_the_window_run_once_each_and_older_ones_are_recorded_missed(
    world: World,
) -> None:
    task = await world.add(catchup_window=timedelta(seconds=25), coalesce=False, max_instances=10)

    await world.after_downtime(55.5)

    assert world.started == [at(55.5), at(55.5)]  # the runs of 40 s and 50 s
    assert await world.history(HistoryOutcome.SUCCESS) == [at(40), at(50)]
    assert await world.history(HistoryOutcome.MISSED) == [at(0), at(10), at(20), at(30)]
    assert world.fired(EventKind.RUN_MISSED) == [at(0), at(10), at(20), at(30)]
    stored = await world.store.get(task.id)
    assert stored is not None and stored.next_run_time == at(60)


async def test_coalesced_fire_times_are_recorded_and_reported_not_dropped(world: World) -> None:
    await world.add(catchup_window=timedelta(seconds=25), coalesce=True)

    await world.after_downtime(55.5)

    assert world.started == [at(55.5)]
    assert await world.history(HistoryOutcome.SUCCESS) == [at(50)]
    assert await world.history(HistoryOutcome.COALESCED) == [at(40)]
    assert await world.history(HistoryOutcome.MISSED) == [at(0), at(10), at(20), at(30)]
    assert world.fired(EventKind.RUN_COALESCED) == [at(40)]
    assert world.fired(EventKind.RUN_MISSED) == [at(0), at(10), at(20), at(30)]


async def test_without_a_window_every_fire_time_is_caught_up(world: World) -> None:
    await world.add(catchup_window=None, coalesce=True)

    await world.after_downtime(35)

    assert await world.history(HistoryOutcome.SUCCESS) == [at(30)]
    assert await world.history(HistoryOutcome.COALESCED) == [at(0), at(10), at(20)]
    assert await world.history(HistoryOutcome.MISSED) == []


async def test_a_window_every_fire_time_is_older_than_misses_them_all(world: World) -> None:
    await world.add(catchup_window=timedelta(seconds=1), coalesce=True)

    await world.after_downtime(35)

    assert world.started == []
    assert await world.history(HistoryOutcome.MISSED) == [at(0), at(10), at(20), at(30)]
    assert await world.history(HistoryOutcome.COALESCED) == []


async def test_caught_up_fire_times_start_no_more_runs_than_max_concurrency_the_rest_stay_due() -> None:
    # before, one claimed task fired all five at once on a worker allowed two runs
    world = World(max_concurrency=2)
    task = await world.add(catchup_window=None, coalesce=False, max_instances=10)
    world.clock.advance(45.5)

    claims: list[tuple[int, datetime | None]] = []
    for _ in range(3):
        started = len(world.started)
        await world.after_downtime(0)
        stored = await world.store.get(task.id)
        assert stored is not None
        claims.append((len(world.started) - started, stored.next_run_time))

    assert claims == [(2, at(20)), (2, at(40)), (1, at(50))]
    assert await world.history(HistoryOutcome.SUCCESS) == [at(0), at(10), at(20), at(30), at(40)]
    assert await world.history(HistoryOutcome.MISSED) == []


async def test_fire_times_max_instances_refuses_are_skipped_at_once_whatever_max_concurrency() -> None:
    # max_instances=1 starts one of them on any worker: the others were left due on a worker
    # allowed one run, and ran one after another instead of being skipped
    world = World(max_concurrency=1)
    task = await world.add(catchup_window=None, coalesce=False, max_instances=1)
    world.clock.advance(45.5)

    await world.after_downtime(0)

    stored = await world.store.get(task.id)
    assert stored is not None
    assert (len(world.started), stored.next_run_time) == (1, at(50))
    assert await world.history(HistoryOutcome.SUCCESS) == [at(0)]
    assert await world.history(HistoryOutcome.SKIPPED) == [at(10), at(20), at(30), at(40)]
    assert world.fired(EventKind.MAX_INSTANCES) == [at(10), at(20), at(30), at(40)]
