"""Self-fencing: deadlines by a monotonic clock, jobs stopped at their next step once the lease
may have passed on, and the engine ending such a run without completing it."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import pytest
from tests.fakes import FakeClock, settle

from backbeat.abc import Executor
from backbeat.api.taskbuild import from_callable
from backbeat.engine.context import current_run
from backbeat.engine.fencing import LeaseDeadlines, fenced
from backbeat.engine.loop import Engine, EngineConfig
from backbeat.errors import LeaseLostError
from backbeat.executors import AsyncIOExecutor, ThreadPoolExecutor
from backbeat.model.events import EventHub, EventKind, SchedulerEvent
from backbeat.model.records import TaskOptions
from backbeat.model.registry import JobRegistry
from backbeat.model.triggers import make_trigger_spec
from backbeat.stores.memory import MemoryStore

T = TypeVar("T")
LEASE = timedelta(seconds=10)
T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


class Monotonic:
    """A monotonic clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_a_run_is_held_until_the_send_time_plus_nine_tenths_of_the_lease() -> None:
    mono, lapsed = Monotonic(), list[list[str]]()
    deadlines = LeaseDeadlines(LEASE, lapsed.append, now=mono)
    deadlines.granted(["r1"], sent_at=100.0)

    mono.now = 108.9
    assert deadlines.holds("r1")
    assert deadlines.check() == []
    mono.now = 109.0
    assert not deadlines.holds("r1")
    assert deadlines.check() == ["r1"]
    assert lapsed == [["r1"]]
    assert deadlines.check() == []  # reported once
    deadlines.close()


async def test_a_renewal_pushes_the_deadline_and_an_older_grant_never_pulls_it_back() -> None:
    mono = Monotonic()
    deadlines = LeaseDeadlines(LEASE, lambda ids: None, now=mono)
    deadlines.granted(["r1"], sent_at=100.0)
    deadlines.granted(["r1"], sent_at=105.0)
    deadlines.granted(["r1"], sent_at=101.0)  # a slow reply to an earlier request
    mono.now = 113.9
    assert deadlines.holds("r1")
    deadlines.forget(["r1"])
    assert not deadlines.holds("r1")
    deadlines.close()


async def test_an_unknown_run_is_not_held() -> None:
    deadlines = LeaseDeadlines(LEASE, lambda ids: None, now=Monotonic())
    assert not deadlines.holds("never granted")


async def test_the_timer_reports_a_lapse_on_the_event_loop_clock() -> None:
    lapsed: list[list[str]] = []
    reported = asyncio.Event()

    def on_lapse(run_ids: list[str]) -> None:
        lapsed.append(run_ids)
        reported.set()

    deadlines = LeaseDeadlines(timedelta(seconds=0.05), on_lapse)
    deadlines.granted(["r1"], sent_at=deadlines.now())
    async with asyncio.timeout(2):
        await reported.wait()
    assert lapsed == [["r1"]]
    deadlines.close()


async def test_a_fenced_job_does_not_run_another_line_once_its_lease_is_gone() -> None:
    held = True
    step = asyncio.get_running_loop().create_future()
    lines: list[str] = []

    async def job() -> str:
        lines.append("before")
        await step
        lines.append("after")  # must not run: the lease went while the job waited
        return "done"

    call = asyncio.ensure_future(_await(fenced(job(), lambda run_id: held, "r1")))
    await settle()
    held = False  # e.g. the process was paused past its deadline
    step.set_result(None)
    with pytest.raises(LeaseLostError, match="r1"):
        await call
    assert lines == ["before"]


async def test_a_fenced_job_that_holds_its_lease_returns_its_result() -> None:
    async def job() -> str:
        await asyncio.sleep(0)
        return "done"

    assert await fenced(job(), lambda run_id: run_id == "r1", "r1") == "done"


async def test_a_cancel_of_a_job_whose_lease_is_gone_is_a_lease_lost_error_and_plain_otherwise() -> None:
    for held, expected in ((True, asyncio.CancelledError), (False, LeaseLostError)):
        state = {"held": True}

        def holds(run_id: str, state: dict[str, bool] = state) -> bool:
            return state["held"]

        call = asyncio.ensure_future(_await(fenced(asyncio.Event().wait(), holds, "r1")))
        await settle()
        state["held"] = held
        call.cancel()
        with pytest.raises(asyncio.CancelledError) as raised:
            await call
        assert type(raised.value) is expected


async def _await(call: Awaitable[T]) -> T:
    return await call


def fenced_engine(
    executor: Executor,
) -> tuple[Engine, MemoryStore, JobRegistry, Monotonic, list[SchedulerEvent]]:
    """An engine on a memory store, its leases and schedules by one fake clock, its deadlines by
    a fake monotonic clock, its events collected."""
    clock, mono, registry = FakeClock(T0), Monotonic(), JobRegistry()
    store = MemoryStore(lease_clock=clock)  # leases end by the same fake clock
    events: list[SchedulerEvent] = []
    hub = EventHub()
    hub.add_listener(events.append)
    engine = Engine(
        store,
        registry,
        {"default": executor},
        hub,
        EngineConfig(owner="a", lease=LEASE),
        clock=clock,
        sleep=clock.sleep,
        monotonic=mono,
    )
    return engine, store, registry, mono, events


async def test_the_engine_stops_a_run_it_could_not_renew_and_does_not_complete_it() -> None:
    engine, store, registry, mono, events = fenced_engine(AsyncIOExecutor())
    ended: list[BaseException] = []

    async def job() -> None:
        try:
            await asyncio.Event().wait()
        except BaseException as exc:
            ended.append(exc)
            raise

    spec = make_trigger_spec("date", run_date=T0, now=T0)
    task = from_callable(registry, job, trigger=spec, options=TaskOptions(), now=T0).task
    await store.add([task])
    await engine._claim_once(100)
    await settle()
    assert len(engine.active_runs()) == 1

    mono.now += 9.5  # no renewal reached the store (a cut link): past the deadline
    [run_id] = engine.deadlines.check()
    await settle()

    assert [type(exc) for exc in ended] == [LeaseLostError]  # the job sees why it was stopped
    assert engine.active_runs() == []
    assert [e.run_id for e in events if e.kind is EventKind.RUN_LEASE_LOST] == [run_id]
    [run] = await store.list_runs()
    assert (run.id, run.owner) == (run_id, "a")  # not completed: taken over when the lease ends
    assert engine.completions.pending == {}


async def test_a_thread_pool_job_sees_its_lease_gone_and_its_result_is_refused() -> None:
    engine, store, registry, mono, events = fenced_engine(ThreadPoolExecutor(max_workers=1))
    started, release, ended, seen = threading.Event(), threading.Event(), threading.Event(), list[bool]()

    def job() -> str:  # runs in a thread: it cannot be interrupted
        seen.append(current_run().lease_valid())
        started.set()
        release.wait(10)
        seen.append(current_run().lease_valid())
        ended.set()
        return "too late"

    spec = make_trigger_spec("date", run_date=T0, now=T0)
    task = from_callable(registry, job, trigger=spec, options=TaskOptions(), now=T0).task
    await store.add([task])
    await engine._claim_once(100)
    assert await asyncio.to_thread(started.wait, 5)

    mono.now += 9.5  # the deadline passes while the thread works
    [run_id] = engine.deadlines.check()
    await settle()
    release.set()
    assert await asyncio.to_thread(ended.wait, 5)
    await settle()

    assert seen == [True, False]
    assert [e.run_id for e in events if e.kind is EventKind.RUN_LEASE_LOST] == [run_id]
    assert [e for e in events if e.kind is EventKind.RUN_EXECUTED] == []  # its result was not taken
    [run] = await store.list_runs()
    assert run.owner == "a" and engine.completions.pending == {}


async def test_a_job_sees_its_fencing_token_and_the_one_taking_it_over_a_greater_one() -> None:
    engine, store, registry, mono, _ = fenced_engine(AsyncIOExecutor())
    clock = engine.clock
    assert isinstance(clock, FakeClock)
    tokens: list[int] = []

    async def job() -> None:
        tokens.append(current_run().fencing_token)
        await asyncio.Event().wait()

    spec = make_trigger_spec("date", run_date=T0, now=T0)
    task = from_callable(registry, job, trigger=spec, options=TaskOptions(), now=T0).task
    await store.add([task])
    await engine._claim_once(100)
    await settle()
    [run] = await store.list_runs()
    assert tokens == [run.fencing_token] and run.fencing_token > 0

    mono.now += 9.5  # fenced here; the lease then ends by the store's clock and "b" takes over
    engine.deadlines.check()
    await settle()
    clock.advance(LEASE.total_seconds())
    other = Engine(
        store,
        registry,
        {"default": AsyncIOExecutor()},
        EventHub(),
        EngineConfig(owner="b", lease=LEASE),
        clock=clock,
        sleep=clock.sleep,
        monotonic=mono,
    )
    await other._claim_once(100)
    await settle()
    [taken] = await store.list_runs()
    assert (taken.owner, taken.attempt) == ("b", 2)
    assert tokens == [run.fencing_token, taken.fencing_token] and taken.fencing_token > run.fencing_token
    for active in other.active_runs():
        other.cancel(active.id)
    await settle()
