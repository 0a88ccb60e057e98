"""Several scheduler processes on one SQLite file: hand-over, kill -9, no duplicates."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.integration import jobs
from tests.scheduling import SchedulerFactory, Worker, wait_for

pytestmark = pytest.mark.slow


async def test_a_task_scheduled_by_one_process_runs_in_another(
    make_scheduler: SchedulerFactory, sqlite_url: str, record_file: Path, workers: Callable[..., Worker]
) -> None:
    worker = workers(sqlite_url)
    producer = make_scheduler(sqlite_url, producer_only=True)
    await producer.start()
    await producer.schedule_delayed_task("hello", jobs.note, delay_seconds=0.2, args=[str(record_file)])
    await wait_for(lambda: len(jobs.read_records(record_file)) == 1)
    [record] = jobs.read_records(record_file)
    assert record["pid"] == worker.process.pid


async def test_kill_9_mid_run_is_rerun_by_another_process_with_the_same_key(
    sqlite_url: str, record_file: Path, workers: Callable[..., Worker], make_scheduler: SchedulerFactory
) -> None:
    victim = workers(sqlite_url, "--lease", "1")
    producer = make_scheduler(sqlite_url, producer_only=True)
    await producer.start()
    await producer.schedule_immediate_task("long", jobs.slow, args=[str(record_file), 1.5, "long"])
    await wait_for(lambda: any(r["event"] == "start" for r in jobs.read_records(record_file)))
    victim.kill()
    killed_at = time.monotonic()
    rescuer = workers(sqlite_url, "--lease", "1")
    await wait_for(lambda: any(r["event"] == "end" for r in jobs.read_records(record_file)), timeout=15)
    starts = [r for r in jobs.read_records(record_file) if r["event"] == "start"]
    assert [r["pid"] for r in starts] == [victim.process.pid, rescuer.process.pid]
    assert starts[0]["run_id"] == starts[1]["run_id"]
    assert [r["attempt"] for r in starts] == [1, 2]
    assert time.monotonic() - killed_at < 10, "a dead owner's run restarts within seconds"
    # The one-shot task leaves the store only after its run completed.
    for _ in range(100):
        if not await producer.list_tasks():
            break
        await asyncio.sleep(0.05)
    assert await producer.list_tasks() == []


async def test_three_processes_run_every_fire_time_once(
    make_scheduler: SchedulerFactory, sqlite_url: str, record_file: Path, workers: Callable[..., Worker]
) -> None:
    for _ in range(3):
        workers(sqlite_url, "--lease", "2")
    producer = make_scheduler(sqlite_url, producer_only=True)
    await producer.start()
    when = datetime.now(UTC) + timedelta(seconds=0.5)
    for i in range(300):
        await producer.schedule_at(
            f"one-{i}",
            jobs.note,
            scheduled_time=when + timedelta(milliseconds=i * 3),
            args=[str(record_file), f"one-{i}"],
        )
    await producer.add_task(jobs.note, "interval", seconds=0.25, args=[str(record_file), "tick"], id="ticker")
    await wait_for(
        lambda: sum(r["label"].startswith("one-") for r in jobs.read_records(record_file)) == 300, timeout=30
    )
    await wait_for(lambda: sum(r["label"] == "tick" for r in jobs.read_records(record_file)) >= 6, timeout=15)
    records = jobs.read_records(record_file)
    per_key = Counter(r["run_id"] for r in records)
    assert max(per_key.values()) == 1, "no fire time ran twice"
    assert len({r["pid"] for r in records}) >= 2, "the work was shared between processes"


async def test_an_at_most_once_task_is_not_rerun_after_its_owner_died(
    sqlite_url: str, record_file: Path, workers: Callable[..., Worker], make_scheduler: SchedulerFactory
) -> None:
    victim = workers(sqlite_url, "--lease", "1")
    producer = make_scheduler(sqlite_url, producer_only=True)
    await producer.start()
    await producer.schedule_immediate_task(
        "charge", jobs.slow, args=[str(record_file), 1.5, "charge"], at_most_once=True
    )
    await wait_for(lambda: any(r["event"] == "start" for r in jobs.read_records(record_file)))
    victim.kill()
    workers(sqlite_url, "--lease", "1")
    for _ in range(200):  # the rescuer marks the run lost and the one-shot task leaves the store
        if not await producer.list_tasks():
            break
        await asyncio.sleep(0.05)
    assert await producer.list_tasks() == []
    assert [r["event"] for r in jobs.read_records(record_file)] == ["start"]
