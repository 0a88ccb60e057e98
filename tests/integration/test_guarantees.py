"""Misfire, coalesce, max_instances, restarts and shutdown, on a real SQLite file."""

from __future__ import annotations

import asyncio
import sqlite3
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from backbeat import EventKind, SchedulerConfig, SchedulerEvent
from backbeat.model.history import HistorySettings
from backbeat.model.records import Claim, RunResult, Task
from backbeat.stores.memory import MemoryStore
from tests.integration import jobs
from tests.scheduling import SchedulerFactory, wait_for


def _db_path(url: str) -> str:
    return url.removeprefix("sqlite:///")


async def test_misfired_fire_times_are_reported_not_run(
    make_scheduler: SchedulerFactory, sqlite_url: str, record_file: Path
) -> None:
    producer = make_scheduler(sqlite_url)
    now = datetime.now(UTC)
    await producer.schedule_at(
        "late",
        jobs.note,
        scheduled_time=now - timedelta(seconds=30),
        args=[str(record_file), "one-shot"],
        misfire_grace_time=1,
    )
    start = now - timedelta(seconds=25)
    recurring = await producer.add_task(
        jobs.note,
        "interval",
        seconds=10,
        start_date=start,
        args=[str(record_file), "every"],
        options={"misfire_grace_time": 1, "coalesce": False},
    )
    # As if every instance had been down for 25 s: three fire times passed, all far past the grace.
    await producer.store.update(recurring, next_run_time=start)
    worker = make_scheduler(sqlite_url)
    missed: list[SchedulerEvent] = []
    worker.add_listener(missed.append, [EventKind.RUN_MISSED])
    await worker.start()
    await wait_for(lambda: len(missed) == 4)
    await asyncio.sleep(0.3)
    assert jobs.read_records(record_file) == []
    [info] = await worker.list_tasks()  # the missed one-shot is gone; the recurring task goes on
    assert info.id == recurring
    assert info.next_run_time is not None and info.next_run_time > datetime.now(UTC)


async def test_coalesce_runs_once_for_many_late_fire_times(
    make_scheduler: SchedulerFactory, sqlite_url: str, record_file: Path
) -> None:
    producer = make_scheduler(sqlite_url)
    late = datetime.now(UTC) - timedelta(seconds=5.5)
    for label, coalesce in (("once", True), ("each", False)):
        task_id = await producer.add_task(
            jobs.note,
            "interval",
            seconds=1,
            start_date=late,
            args=[str(record_file), label],
            options={"misfire_grace_time": None, "coalesce": coalesce, "max_instances": 10},
        )
        await producer.store.update(task_id, next_run_time=late)
    worker = make_scheduler(sqlite_url)
    await worker.start()
    await wait_for(lambda: sum(r["label"] == "each" for r in jobs.read_records(record_file)) >= 6)
    labels = Counter(r["label"] for r in jobs.read_records(record_file))
    # Six late fire times: the coalescing task ran once for all of them (plus at most one new tick).
    assert 1 <= labels["once"] <= 2
    assert labels["each"] >= 6


async def test_max_instances_is_global_across_schedulers(
    make_scheduler: SchedulerFactory, sqlite_url: str, record_file: Path
) -> None:
    first, second = make_scheduler(sqlite_url), make_scheduler(sqlite_url)
    skipped: list[SchedulerEvent] = []
    for scheduler in (first, second):
        scheduler.add_listener(skipped.append, [EventKind.MAX_INSTANCES])
        await scheduler.start()
    await first.add_task(
        jobs.slow,
        "interval",
        seconds=0.1,
        args=[str(record_file), 0.6],
        options={"max_instances": 1, "misfire_grace_time": None},
    )
    await wait_for(lambda: sum(r["event"] == "end" for r in jobs.read_records(record_file)) >= 2, timeout=15)
    events = sorted(
        (r["t"], r["event"]) for r in jobs.read_records(record_file) if r["event"] in ("start", "end")
    )
    running = peak = 0
    for _, event in events:
        running += 1 if event == "start" else -1
        peak = max(peak, running)
    assert peak == 1
    assert skipped, "fire times while a run was in progress are reported as skipped"


async def test_restart_runs_due_one_shots_and_continues_recurring(
    make_scheduler: SchedulerFactory, sqlite_url: str, record_file: Path
) -> None:
    first = make_scheduler(sqlite_url)
    await first.start()
    await first.schedule_delayed_task(
        "later", jobs.note, delay_seconds=0.8, args=[str(record_file), "one-shot"]
    )
    await first.add_task(jobs.note, "interval", seconds=0.3, args=[str(record_file), "tick"])
    await asyncio.sleep(0.5)
    await first.stop_async()
    ticks_before = sum(r["label"] == "tick" for r in jobs.read_records(record_file))
    await asyncio.sleep(1.0)  # the one-shot falls due while nobody runs
    second = make_scheduler(sqlite_url)
    await second.start()
    await wait_for(lambda: any(r["label"] == "one-shot" for r in jobs.read_records(record_file)))
    await wait_for(
        lambda: sum(r["label"] == "tick" for r in jobs.read_records(record_file)) >= ticks_before + 2
    )


async def test_graceful_shutdown_finishes_short_runs_and_releases_long_ones(
    make_scheduler: SchedulerFactory, sqlite_url: str, record_file: Path
) -> None:
    first = make_scheduler(sqlite_url, lease_seconds=30.0)
    await first.start()
    await first.schedule_immediate_task("short", jobs.slow, args=[str(record_file), 0.3, "short"])
    await first.schedule_immediate_task("long", jobs.slow, args=[str(record_file), 30, "long"])
    await wait_for(lambda: sum(r["event"] == "start" for r in jobs.read_records(record_file)) == 2)
    await first.stop_async(timeout=1.0)
    events = {(r["event"], r["label"]) for r in jobs.read_records(record_file)}
    assert ("end", "short") in events
    assert ("cancelled", "long") in events, "the long run stopped here, not left going beside the next"
    # The long run was released: another scheduler takes it at once, not after the 30 s lease.
    second = make_scheduler(sqlite_url, lease_seconds=30.0)
    await second.start()
    await wait_for(
        lambda: (
            sum(r["label"] == "long" and r["event"] == "start" for r in jobs.read_records(record_file)) == 2
        ),
        timeout=5,
    )
    restarted = [r for r in jobs.read_records(record_file) if r["label"] == "long" and r["event"] == "start"]
    assert restarted[0]["run_id"] == restarted[1]["run_id"]
    assert [r["attempt"] for r in restarted] == [1, 2]


async def test_a_corrupt_record_is_quarantined_and_the_loop_goes_on(
    make_scheduler: SchedulerFactory, sqlite_url: str, record_file: Path
) -> None:
    scheduler = make_scheduler(sqlite_url)
    await scheduler.start()
    await scheduler.add_task(jobs.note, "interval", seconds=0.2, args=[str(record_file)], id="healthy")
    await scheduler.add_task(jobs.note, "interval", seconds=0.2, args=[str(record_file)], id="victim")
    with sqlite3.connect(_db_path(sqlite_url)) as db:
        db.execute("UPDATE tasks SET doc = '{not json' WHERE id = 'victim'")
    count = len(jobs.read_records(record_file))
    await wait_for(lambda: len(jobs.read_records(record_file)) >= count + 3)
    quarantined = await scheduler.quarantined()
    assert [q.key for q in quarantined] == ["victim"]
    with sqlite3.connect(_db_path(sqlite_url)) as db:
        assert db.execute("SELECT count(*) FROM tasks WHERE id = 'victim'").fetchone() == (1,)


async def test_a_removed_job_class_leaves_its_tasks_orphaned_not_deleted(
    make_scheduler: SchedulerFactory, sqlite_url: str
) -> None:
    scheduler = make_scheduler(sqlite_url)
    task = Task(
        id="ghost",
        name="GhostJob",
        job="job:GhostJob",
        next_run_time=datetime.now(UTC),
        trigger={"type": "date", "run_date": datetime.now(UTC).isoformat(), "timezone": "UTC"},
    )
    await scheduler.store.open()
    await scheduler.store.add([task])
    orphaned: list[SchedulerEvent] = []
    scheduler.add_listener(orphaned.append, [EventKind.TASK_ORPHANED])
    await scheduler.start()
    await wait_for(lambda: bool(orphaned))
    [info] = await scheduler.orphaned_tasks()
    assert info.id == "ghost" and "GhostJob" in (info.orphaned or "")
    await scheduler.stop_async()
    # Registered again (the class came back): the task is adopted and runs.
    from backbeat import ScheduledBackgroundJob, backgroundjob

    ran = asyncio.Event()

    @backgroundjob(task_type="scheduled", name="GhostJob")
    class GhostJob(ScheduledBackgroundJob):
        async def run_at(self, *args: object, **kwargs: object) -> None:
            ran.set()

    again = make_scheduler(sqlite_url)
    again.options.register_task_type("GhostJob", GhostJob)
    await again.start()
    await asyncio.wait_for(ran.wait(), 5)


async def test_a_run_whose_task_record_is_corrupt_is_kept_not_dropped(
    make_scheduler: SchedulerFactory, sqlite_url: str, record_file: Path
) -> None:
    from backbeat.model.records import FireDecision
    from backbeat.stores.sqlite.store import SQLiteStore

    producer = make_scheduler(sqlite_url, producer_only=True)
    task_id = await producer.schedule_immediate_task("soon", jobs.note, args=[str(record_file)])
    store = producer.store
    assert isinstance(store, SQLiteStore)
    # a process that fired the task and died: its run's lease is over at once
    now = datetime.now(UTC)
    [claimed] = (await store.claim_due("dead", now=now, lease=timedelta(seconds=10), limit=10)).tasks
    assert claimed.next_run_time is not None
    decision = FireDecision(
        task_id=task_id,
        claimed_version=claimed.version,
        fire_times=[claimed.next_run_time],
        next_run_time=None,
    )
    await store.fire("dead", [decision], now=now, lease=timedelta(milliseconds=1))
    with sqlite3.connect(store.path) as db:
        db.execute("UPDATE tasks SET doc = '{not json' WHERE id = ?", (task_id,))

    worker = make_scheduler(sqlite_url)
    await worker.start()

    async def quarantined() -> bool:
        return any(r.key == task_id for r in await worker.quarantined())

    for _ in range(200):
        [waiting] = await store.list_runs()
        if await quarantined() and waiting.attempt == 2 and waiting.owner is None:
            break
        await asyncio.sleep(0.05)
    [run] = await store.list_runs()
    assert (run.task_id, run.owner, run.attempt) == (task_id, None, 2), "kept, waiting, not dropped"
    assert run.lease_until > datetime.now(UTC) + timedelta(seconds=20), "looked at again later"
    assert await quarantined()
    assert jobs.read_records(record_file) == []


async def test_runs_claimed_ahead_start_at_their_fire_time_never_before(
    make_scheduler: SchedulerFactory, sqlite_url: str, record_file: Path
) -> None:
    scheduler = make_scheduler(sqlite_url, config=SchedulerConfig(claim_ahead=0.5, poll_interval=0.2))
    claims: list[datetime] = []
    calls = 0
    await scheduler.start()
    store_claim = scheduler.store.claim_due

    async def claim_due(*args: Any, **kwargs: Any) -> Claim:
        nonlocal calls
        calls += 1
        claim = await store_claim(*args, **kwargs)
        claims.extend(datetime.now(UTC) for _ in claim.tasks)
        return claim

    scheduler.store.claim_due = claim_due  # type: ignore[method-assign]
    start = datetime.now(UTC) + timedelta(seconds=1)
    await scheduler.add_task(
        jobs.note_fire_time, "interval", seconds=0.25, start_date=start, args=[str(record_file)]
    )
    await wait_for(lambda: len(jobs.read_records(record_file)) >= 4)
    records = jobs.read_records(record_file)[:4]
    assert [r["fire_time"] for r in records] == [
        (start + i * timedelta(seconds=0.25)).timestamp() for i in range(4)
    ]
    assert all(r["t"] >= r["fire_time"] for r in records), "a run claimed ahead never starts early"
    # claimed ahead: each fire time was claimed before it came (the lease of 2 s caps the 0.5 s at 0.5 s)
    assert claims and claims[0] < start
    # a fire time claimed ahead but held back (max_instances) is not polled for until it comes
    assert calls < 60, f"{calls} claims in about 2 s"


class CompleteFailsOnce(MemoryStore):
    """A memory store whose first ``complete`` fails as a bug would (not a store error)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    async def complete(
        self, owner: str, results: Sequence[RunResult], *, history: HistorySettings | None = None
    ) -> set[str]:
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("a bug in complete")
        return await super().complete(owner, results, history=history)


async def test_an_unexpected_error_while_completing_does_not_stop_completing(
    make_scheduler: SchedulerFactory, record_file: Path
) -> None:
    store = CompleteFailsOnce()
    scheduler = make_scheduler(store)
    errors: list[SchedulerEvent] = []
    scheduler.event_stream.subscribe(errors.append)
    await scheduler.start_async()
    await scheduler.schedule_immediate_task("first", jobs.note, args=[str(record_file), "first"])
    await wait_for(lambda: store.calls >= 2)  # the failed batch is tried again
    await scheduler.schedule_immediate_task("second", jobs.note, args=[str(record_file), "second"])
    await wait_for(lambda: len(jobs.read_records(record_file)) == 2 and store.calls >= 3)
    assert await store.list_runs() == []  # both runs completed: the loop went on
    failures = [e for e in errors if e.kind is EventKind.STORE_ERROR]
    assert [str(e.error) for e in failures] == ["a bug in complete"]
    await scheduler.shutdown()


class ClaimFailsOnce(MemoryStore):
    """A memory store whose first ``claim_due`` fails as a bug would (not a store error)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    async def claim_due(self, owner: str, **kwargs: Any) -> Claim:
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("a bug in claim_due")
        return await super().claim_due(owner, **kwargs)


async def test_an_unexpected_error_while_claiming_does_not_stop_claiming(
    make_scheduler: SchedulerFactory, record_file: Path
) -> None:
    store = ClaimFailsOnce()
    scheduler = make_scheduler(store)
    errors: list[SchedulerEvent] = []
    scheduler.event_stream.subscribe(errors.append)
    await scheduler.schedule_immediate_task("first", jobs.note, args=[str(record_file), "first"])
    await scheduler.start_async()
    await wait_for(lambda: len(jobs.read_records(record_file)) == 1)
    assert store.calls >= 2
    assert any(e.kind is EventKind.STORE_ERROR and isinstance(e.error, RuntimeError) for e in errors)
