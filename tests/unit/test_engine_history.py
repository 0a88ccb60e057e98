"""The engine records run history in its store, by a fake clock: outcomes, times, errors,
opt-in arguments, pruning a task at a time, and nothing at all when history is off."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Collection, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from tests.fakes import FakeClock, settle

from backbeat.api.taskbuild import from_callable
from backbeat.engine.history import AGE_PRUNE_CALLS, HistoryRecorder
from backbeat.engine.loop import Engine, EngineConfig
from backbeat.executors import AsyncIOExecutor
from backbeat.model.events import EventHub, EventKind, SchedulerEvent
from backbeat.model.history import (
    EPOCH,
    PRUNE_BATCH,
    HistoryEntry,
    HistoryOutcome,
    HistoryQuery,
    HistorySettings,
)
from backbeat.model.records import Run, RunOutcome, RunResult, Task, TaskOptions
from backbeat.model.registry import JobRegistry
from backbeat.model.triggers import make_trigger_spec
from backbeat.policies.definitions import RetryPolicy
from backbeat.stores.memory import MemoryStore
from backbeat.stores.sqlite import SQLiteStore

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


class World:
    def __init__(self) -> None:
        self.clock = FakeClock(T0)
        self.store = MemoryStore(lease_clock=self.clock)
        self.registry = JobRegistry()
        self.engines: list[Engine] = []
        self.calls = 0
        self.error: Exception | None = None
        self.takes = 0.0
        self.gate: asyncio.Event | None = None

    def engine(
        self, *, owner: str = "host-a:4242:abcd", fake_deadlines: bool = False, **config: Any
    ) -> Engine:
        """An engine; with ``fake_deadlines`` its lease deadlines go by the fake clock too."""
        engine = Engine(
            self.store,
            self.registry,
            {"default": AsyncIOExecutor()},
            EventHub(),
            EngineConfig(owner=owner, lease=timedelta(seconds=10), **config),
            clock=self.clock,
            sleep=self.clock.sleep,
            monotonic=(lambda: (self.clock() - T0).total_seconds()) if fake_deadlines else None,
        )
        self.engines.append(engine)
        return engine

    async def add(self, *, every: float | None = 10, args: list[Any] | None = None, **options: Any) -> Task:
        async def job(*_: Any) -> None:
            self.calls += 1
            self.clock.advance(self.takes)
            if self.gate is not None:
                await self.gate.wait()
            if self.error is not None:
                raise self.error

        trigger = (
            make_trigger_spec("date", run_date=T0, now=T0)
            if every is None
            else make_trigger_spec("interval", seconds=every, start_date=T0, now=T0)
        )
        task = from_callable(
            self.registry, job, trigger=trigger, options=TaskOptions(**options), now=T0, args=args or []
        ).task
        task.next_run_time = T0
        await self.store.add([task])
        return task

    async def history(self, **query: Any) -> list[HistoryEntry]:
        entries, _ = await self.store.run_history(HistoryQuery(limit=1000, **query))
        return entries


@pytest.fixture
async def world() -> AsyncIterator[World]:
    world = World()
    yield world
    for engine in world.engines:
        for _, task in list(engine._active.values()):
            task.cancel()


async def step(world: World, engine: Engine) -> None:
    """Claim what is due, run it to the end and complete it (recording its history)."""
    await engine._claim_once(100)
    await finish(engine)


async def finish(engine: Engine) -> None:
    """Run what ``engine`` has going to the end and complete it (recording its history)."""
    async with asyncio.timeout(5):
        await asyncio.gather(*(task for _, task in engine._active.values()))
    await engine.completions.drain()
    await engine.history.flush(force=True)


async def test_a_success_is_recorded_with_its_times_and_owner(world: World) -> None:
    engine = world.engine()
    task = await world.add(every=10)
    world.takes = 2.5
    await step(world, engine)

    [entry] = await world.history()
    assert (entry.task_id, entry.task_name, entry.outcome, entry.attempt) == (
        task.id,
        task.name,
        HistoryOutcome.SUCCESS,
        1,
    )
    assert (entry.fire_time, entry.started_at, entry.ended_at, entry.duration) == (
        T0,
        T0,
        T0 + timedelta(seconds=2.5),
        2.5,
    )
    assert (entry.host, entry.pid, entry.error, entry.args) == ("host-a", 4242, None, None)


async def test_failures_are_recorded_as_retry_scheduled_then_dead_lettered_with_a_truncated_message(
    world: World,
) -> None:
    engine = world.engine(history=HistorySettings(message_limit=20))
    retry = RetryPolicy(max_attempts=2, initial_delay=1, backoff_factor=1, jitter=0).to_json()
    task = await world.add(every=None, retry=retry)
    world.error = ValueError("card declined by the issuing bank")
    await step(world, engine)
    world.clock.advance(1)
    await step(world, engine)

    second, first = await world.history(task_id=task.id)
    assert (first.outcome, first.attempt) == (HistoryOutcome.RETRY_SCHEDULED, 1)
    assert (second.outcome, second.attempt) == (HistoryOutcome.DEAD_LETTERED, 2)
    assert second.error_type == "builtins.ValueError"
    assert second.error == "card declined by th…"
    failed = await world.history(outcomes=frozenset({HistoryOutcome.DEAD_LETTERED}))
    assert [e.id for e in failed] == [second.id]


async def test_missed_fire_times_are_recorded_without_a_start(world: World) -> None:
    engine = world.engine()
    task = await world.add(every=10, misfire_grace_time=1, coalesce=False)
    world.clock.advance(25.5)
    await engine._claim_once(100)
    await settle()
    await engine.completions.drain()
    await engine.history.flush(force=True)

    entries = await world.history(task_id=task.id)
    assert [(e.fire_time, e.outcome, e.started_at) for e in entries] == [
        (T0 + timedelta(seconds=20), HistoryOutcome.MISSED, None),
        (T0 + timedelta(seconds=10), HistoryOutcome.MISSED, None),
        (T0, HistoryOutcome.MISSED, None),
    ]
    assert world.calls == 0


async def test_arguments_are_kept_only_when_asked_for(world: World) -> None:
    plain, opted = world.engine(), world.engine(history=HistorySettings(record_args=True))
    await world.add(every=None, args=["A-1"])
    await step(world, plain)
    world.clock.advance(1)
    await world.add(every=None, args=["A-2"])
    await step(world, opted)

    newest, oldest = await world.history()
    assert oldest.args is None
    assert newest.args == {"args": ["A-2"], "kwargs": {}, "data": None}


async def test_a_task_keeps_about_its_newest_per_task_entries(world: World) -> None:
    engine = world.engine(history=HistorySettings(per_task=10))  # pruned every 1 entry
    task = await world.add(every=1)
    for _ in range(25):
        await step(world, engine)
        world.clock.advance(1)

    entries = await world.history(task_id=task.id)
    assert world.calls == 25
    assert len(entries) == 10
    assert entries[0].fire_time == T0 + timedelta(seconds=24)


async def test_entries_older_than_the_retention_are_pruned(world: World) -> None:
    engine = world.engine(history=HistorySettings(retention=timedelta(minutes=5)))
    await world.add(every=None)
    await step(world, engine)
    world.clock.advance(600)
    new = await world.add(every=None)
    await step(world, engine)

    assert [e.task_id for e in await world.history()] == [new.id]


async def test_nothing_is_recorded_when_history_is_off(world: World) -> None:
    engine = world.engine(history=None)
    await world.add(every=None)
    await step(world, engine)
    assert world.calls == 1
    assert await world.history() == []


async def test_a_run_whose_lease_was_lost_is_recorded_as_lost_lease(world: World) -> None:
    engine = world.engine()
    task = await world.add(every=None)
    world.gate = asyncio.Event()
    await engine._claim_once(100)
    await settle()
    [run] = engine.active_runs()
    engine._fence([run.id])  # as the lease deadline would, had renewals failed
    await settle()
    await engine.completions.drain()
    await engine.history.flush(force=True)

    [entry] = await world.history(task_id=task.id)
    assert (entry.outcome, entry.started_at) == (HistoryOutcome.LOST_LEASE, T0)
    assert world.calls == 1


async def test_a_run_given_up_unstarted_after_a_slow_claim_is_recorded_as_lost_lease(world: World) -> None:
    dead, slow, rescuer = (world.engine(owner=f"host-{n}:{n}:abcd") for n in "abc")
    lost: list[SchedulerEvent] = []
    slow.events.add_listener(lost.append, [EventKind.RUN_LEASE_LOST])
    task = await world.add(every=None)
    world.gate = asyncio.Event()
    await dead._claim_once(100)  # attempt 1 starts, then its owner stops renewing
    world.clock.advance(11)
    claimed = await slow._claim(100)  # takes attempt 2 over ...
    assert [run.attempt for run in claimed.runs] == [2]
    world.clock.advance(11)  # ... and hears back only after its lease ended
    await rescuer._claim_once(100)
    await settle()
    await slow._start(claimed)
    await settle()
    await slow.history.flush(force=True)

    assert slow.active_runs() == [] and [run.attempt for run in rescuer.active_runs()] == [3]
    assert world.calls == 2
    [entry] = await world.history(task_id=task.id)
    assert (entry.outcome, entry.attempt, entry.started_at, entry.owner) == (
        HistoryOutcome.LOST_LEASE,
        2,
        None,
        slow.owner,
    )
    assert [(event.run_id, event.attempt) for event in lost] == [(entry.run_id, 2)]


async def test_a_dead_letter_run_again_is_recorded_again(world: World) -> None:
    engine = world.engine()
    retry = RetryPolicy(max_attempts=1).to_json()
    task = await world.add(every=None, retry=retry)
    world.error = ValueError("card declined")
    await step(world, engine)
    [letter] = await world.store.dead_letters(task.id)
    assert await world.store.requeue_dead_letter(letter.id, now=world.clock()) is not None
    await step(world, engine)  # the same fire time and attempt, under a new lease: fails again

    again, first = await world.history(task_id=task.id)
    assert (first.outcome, again.outcome) == (HistoryOutcome.DEAD_LETTERED, HistoryOutcome.DEAD_LETTERED)
    assert (first.run_id, first.attempt) == (again.run_id, again.attempt) and first.id != again.id


async def test_a_run_of_a_removed_task_is_recorded_as_its_own_not_as_one_of_a_task_added_again(
    world: World,
) -> None:
    engine = world.engine()
    first = await world.add(every=None)
    world.gate = asyncio.Event()
    await engine._claim_once(100)
    await settle()
    [run] = engine.active_runs()
    assert await world.store.remove([first.id]) == [first.id]
    await world.store.add([first.copy(name="second", next_run_time=T0 + timedelta(hours=1))])
    world.gate.set()
    await finish(engine)

    [entry] = await world.history(task_id=first.id)
    assert (entry.run_id, entry.task_name, entry.outcome) == (run.id, first.name, HistoryOutcome.SUCCESS)
    second = await world.store.get(first.id)
    assert second is not None and second.name == "second"
    assert (second.running, second.runs, second.last_outcome) == (0, 0, None)
    assert await world.store.list_runs(first.id) == []


class CompletionSentTwice(MemoryStore):
    """A memory store whose every completion runs twice and answers with the second reply, as a
    completion sent again after its first reply was lost does."""

    async def complete(
        self, owner: str, results: Sequence[RunResult], *, history: HistorySettings | None = None
    ) -> set[str]:
        await super().complete(owner, results, history=history)
        return await super().complete(owner, results, history=history)


async def test_a_completion_sent_again_records_its_runs_once(world: World) -> None:
    world.store = CompletionSentTwice(lease_clock=world.clock)
    engine = world.engine()
    task = await world.add(every=None)
    world.takes = 1.5
    await step(world, engine)

    [entry] = await world.history()
    assert (entry.task_id, entry.outcome, entry.started_at, entry.ended_at) == (
        task.id,
        HistoryOutcome.SUCCESS,
        T0,
        T0 + timedelta(seconds=1.5),
    )
    assert await world.store.list_runs() == []


async def test_a_run_its_completion_finds_taken_over_is_recorded_by_the_engine(world: World) -> None:
    # not fenced (as a thread-pool job, which cannot be stopped): its deadline passed here too
    engine = world.engine(fake_deadlines=True, fencing=False)
    task = await world.add(every=None)
    world.gate = asyncio.Event()
    await engine._claim_once(100)
    await settle()
    [run] = engine.active_runs()
    world.clock.advance(11)  # its lease ended unnoticed here, and another owner took the run
    taken = await world.store.claim_due("other", now=world.clock(), lease=timedelta(seconds=10), limit=10)
    assert [r.id for r in taken.runs] == [run.id]
    world.gate.set()
    await finish(engine)

    [entry] = await world.history(task_id=task.id)
    assert (entry.run_id, entry.outcome, entry.started_at) == (run.id, HistoryOutcome.SUCCESS, T0)


async def test_the_history_flush_timer_does_not_send_the_claim_loop_to_the_store(world: World) -> None:
    engine = world.engine()
    await world.add(every=None)
    await step(world, engine)
    assert engine._wake.is_set()  # a completion freed capacity: claim again
    engine._wake.clear()

    await engine.completions.drain()  # where the flush timer brings the complete loop

    assert not engine._wake.is_set()


class _PruneSpy(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.pruned: list[list[str]] = []

    async def prune_history(self, task_ids: Collection[str], *, before: datetime, keep: int) -> int:
        self.pruned.append(sorted(task_ids))
        return await super().prune_history(task_ids, before=before, keep=keep)


async def test_a_batch_with_several_runs_of_a_task_past_its_pruning_count_prunes_it() -> None:
    store = _PruneSpy()
    recorder = HistoryRecorder(store, HistorySettings(per_task=30), owner="o", clock=lambda: T0)  # every 3

    def done(task_id: str, second: int) -> RunResult:
        fire = T0 + timedelta(seconds=second)
        run = Run(id=f"{task_id}@{fire.isoformat()}", task_id=task_id, fire_time=fire, lease_until=fire)
        return RunResult(run=run, outcome=RunOutcome.SUCCESS, finished_at=fire)

    recorder.completed([done("a", 1), done("b", 1)], set())
    recorder.completed([done("a", 2), done("a", 3), done("a", 4), done("b", 2)], set())  # a: 1 -> 4
    await recorder.flush(force=True)

    assert store.pruned == [["a"]]


def _old_entries(n: int) -> list[HistoryEntry]:
    """``n`` entries of one-shot tasks that ended eight days before T0 (past the default week)."""
    ended = T0 - timedelta(days=8)
    return [
        HistoryEntry(
            id=f"once-{i}@x#1#success",
            task_id=f"once-{i}",
            task_name="once",
            run_id=f"once-{i}@x",
            fire_time=ended,
            started_at=ended,
            ended_at=ended - timedelta(milliseconds=i),
            outcome=HistoryOutcome.SUCCESS,
            attempt=1,
        )
        for i in range(n)
    ]


def _success(task_id: str) -> RunResult:
    run = Run(id=f"{task_id}@{T0.isoformat()}", task_id=task_id, fire_time=T0, lease_until=T0)
    return RunResult(run=run, outcome=RunOutcome.SUCCESS, finished_at=T0)


async def test_old_entries_found_faster_than_a_prune_a_minute_removes_are_pruned_at_each_flush() -> None:
    store = _PruneSpy()
    await store.record_history(_old_entries(9 * PRUNE_BATCH + 10))
    recorder = HistoryRecorder(store, HistorySettings(), owner="o", clock=lambda: T0)  # the clock stands

    left = []
    for _ in range(3):
        recorder.completed([_success("pay")], set())  # runs go on ending: the engine flushes
        await recorder.flush(force=True)
        left.append(len((await store.run_history(HistoryQuery(limit=10_000)))[0]))

    # a bounded number of calls a flush (each about PRUNE_BATCH), and no minute's wait between
    assert left == [5 * PRUNE_BATCH + 10, PRUNE_BATCH + 10, 0]
    assert len(store.pruned) == 2 * AGE_PRUNE_CALLS + 2


async def test_a_prune_that_leaves_no_old_entries_waits_a_minute_for_the_next() -> None:
    store = _PruneSpy()
    await store.record_history(_old_entries(PRUNE_BATCH - 1))
    clock = FakeClock(T0)
    recorder = HistoryRecorder(store, HistorySettings(), owner="o", clock=clock)

    for seconds in (0, 30, 31):
        clock.advance(seconds)
        recorder.completed([_success("pay")], set())
        await recorder.flush(force=True)

    assert len(store.pruned) == 2  # at T0, then at T0 + 61 s, not at T0 + 30 s


async def test_the_recorder_leaves_out_an_entry_that_ended_before_1970_and_records_the_rest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # every store refuses a batch holding one (an injected clock, a wrong system clock): the
    # recorder leaves that entry out rather than lose the batch with it
    store = MemoryStore()
    recorder = HistoryRecorder(store, HistorySettings(), owner="o", clock=lambda: T0, by_completions=False)
    results = []
    for task_id, ended in (("old", EPOCH - timedelta(seconds=1)), ("new", T0)):
        run = Run(id=f"{task_id}@{T0.isoformat()}", task_id=task_id, fire_time=T0, lease_until=T0)
        results.append(RunResult(run=run, outcome=RunOutcome.SUCCESS, finished_at=ended))

    with caplog.at_level("WARNING", logger="backbeat.engine"):
        recorder.completed(results, set())
        await recorder.flush(force=True)

    entries, _ = await store.run_history(HistoryQuery())
    assert [e.task_id for e in entries] == ["new"]
    assert any("old@" in r.getMessage() and "before 1970" in r.getMessage() for r in caplog.records)


async def test_the_recorder_leaves_out_an_entry_whose_error_no_store_can_encode_and_records_the_rest(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # an OSError's message spells a file name that is not UTF-8 with lone surrogates
    # (surrogateescape): a store's encoder refuses the batch holding one, which a completion
    # leaves out too (completed_entry)
    store = SQLiteStore(tmp_path / "history.db")
    await store.open()
    recorder = HistoryRecorder(store, HistorySettings(), owner="o", clock=lambda: T0, by_completions=False)
    results = []
    for task_id, name in (("odd", b"\xff".decode(errors="surrogateescape")), ("plain", "x")):
        run = Run(id=f"{task_id}@{T0.isoformat()}", task_id=task_id, fire_time=T0, lease_until=T0)
        error, error_type = f"no such file: '/tmp/{name}'", "builtins.FileNotFoundError"
        results.append(
            RunResult(run=run, outcome=RunOutcome.FAILURE, finished_at=T0, error=error, error_type=error_type)
        )

    try:
        with caplog.at_level("WARNING", logger="backbeat.engine"):
            recorder.completed(results, set())
            await recorder.flush(force=True)
        entries, _ = await store.run_history(HistoryQuery())
    finally:
        await store.close()

    assert [e.task_id for e in entries] == ["plain"]
    assert any("odd@" in r.getMessage() and "surrogate" in r.getMessage() for r in caplog.records)
