"""Overlap policies held across processes: two worker processes share a Redis or PostgreSQL
store and run a task whose runs (1.8 s) outlast its interval (1 s), under each policy."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.integration import jobs
from tests.scheduling import SchedulerFactory, Worker, wait_for

pytestmark = pytest.mark.slow

INTERVAL = 1.0
WORK = 1.8
"""Seconds a run works: longer than the interval, so fire times come while a run goes."""
WINDOW = 4.6
"""Seconds the task stays scheduled: fire times at 1, 2, 3 and 4 s after it was added."""

STORES = [
    pytest.param("redis", marks=pytest.mark.redis),
    pytest.param("postgresql", marks=pytest.mark.postgresql),
]


@dataclass
class Execution:
    fire_time: float
    start: float
    end: float
    cancelled: bool
    pid: int


def executions(record_file: Path) -> list[Execution]:
    starts: dict[str, dict[str, Any]] = {}
    ends: dict[str, dict[str, Any]] = {}
    for record in jobs.read_records(record_file):
        (starts if record["event"] == "start" else ends)[record["run_id"]] = record
    return sorted(
        (
            Execution(
                fire_time=datetime.fromisoformat(run_id.rsplit("@", 1)[1]).timestamp(),
                start=record["t"],
                end=ends[run_id]["t"],
                cancelled=ends[run_id]["event"] == "cancelled",
                pid=record["pid"],
            )
            for run_id, record in starts.items()
        ),
        key=lambda e: e.start,
    )


def most_at_once(runs: list[Execution]) -> int:
    """The most executions going at one moment."""
    return max((sum(o.start <= run.start < o.end for o in runs) for run in runs), default=0)


async def run_policy(
    make_scheduler: SchedulerFactory,
    workers: Callable[..., Worker],
    store_url: str,
    record_file: Path,
    overlap: str,
    work: float = WORK,
    **options: Any,
) -> tuple[list[Execution], dict[str, int]]:
    """Two workers run the task for WINDOW seconds; it is then paused and its runs drained.
    Returns the executions (all ended) and the count of history entries by outcome."""
    workers(store_url, "--lease", "1.5")
    workers(store_url, "--lease", "1.5")
    producer = make_scheduler(store_url, producer_only=True)
    await producer.start_async()
    task_id = await producer.schedule_recurring_task(
        "overlapping",
        jobs.slow,
        interval=INTERVAL,
        args=[str(record_file), work],
        misfire_grace_time=None,
        overlap=overlap,
        **options,
    )
    await asyncio.sleep(WINDOW)
    await producer.pause_task(task_id)
    paused_at = time.time()

    async def drained() -> bool:
        return not await producer.store.list_runs(task_id)

    deadline = time.monotonic() + 30
    while not await drained():
        assert time.monotonic() < deadline, "the task's runs did not drain"
        await asyncio.sleep(0.1)

    def all_ended() -> bool:
        events = [record["event"] for record in jobs.read_records(record_file)]
        return events.count("start") * 2 == len(events)

    await wait_for(all_ended)
    runs = [run for run in executions(record_file) if run.fire_time <= paused_at]
    # each run's history entry is written at most 0.2 s after it ended, by its own worker
    while True:
        page = await producer.run_history(task_id=task_id, limit=1000)
        outcomes: dict[str, int] = {}
        for entry in page.entries:
            outcomes[entry.outcome.value] = outcomes.get(entry.outcome.value, 0) + 1
        if outcomes.get("success", 0) + outcomes.get("cancelled", 0) >= len(runs):
            break
        assert time.monotonic() < deadline, f"history {outcomes} of {len(runs)} runs"
        await asyncio.sleep(0.1)
    return runs, outcomes


@pytest.mark.parametrize("store_url", STORES, indirect=True)
async def test_skip_never_runs_two_at_once_and_records_the_skipped_fire_times(
    make_scheduler: SchedulerFactory, workers: Callable[..., Worker], store_url: str, record_file: Path
) -> None:
    runs, outcomes = await run_policy(make_scheduler, workers, store_url, record_file, "skip")
    assert most_at_once(runs) == 1
    # never kept for later: each ran before the next fire time came
    assert all(run.start - run.fire_time < INTERVAL for run in runs)
    assert runs and outcomes.get("skipped", 0) >= 1 and outcomes["success"] == len(runs)


@pytest.mark.parametrize("store_url", STORES, indirect=True)
async def test_buffer_one_runs_one_kept_fire_time_after_the_running_one(
    make_scheduler: SchedulerFactory, workers: Callable[..., Worker], store_url: str, record_file: Path
) -> None:
    runs, outcomes = await run_policy(make_scheduler, workers, store_url, record_file, "buffer_one")
    assert most_at_once(runs) == 1
    late = [run for run in runs if run.start - run.fire_time > 0.5]
    assert late, "the kept fire time waited for the running one"
    for run in late:  # it started once the run before it ended, in whichever process
        before = max((r for r in runs if r.start < run.start), key=lambda r: r.start)
        assert 0 <= run.start - before.end < 1.0
    assert outcomes.get("skipped", 0) >= 1 and outcomes["success"] == len(runs)


@pytest.mark.parametrize("store_url", STORES, indirect=True)
async def test_buffer_all_runs_every_fire_time_in_order_one_at_a_time(
    make_scheduler: SchedulerFactory, workers: Callable[..., Worker], store_url: str, record_file: Path
) -> None:
    runs, outcomes = await run_policy(make_scheduler, workers, store_url, record_file, "buffer_all")
    assert most_at_once(runs) == 1
    fire_times = [run.fire_time for run in runs]
    assert len(runs) >= 3 and fire_times == sorted(fire_times)
    assert outcomes == {"success": len(runs)}  # none skipped: every fire time ran


@pytest.mark.parametrize("store_url", STORES, indirect=True)
async def test_cancel_other_cancels_the_running_one_wherever_it_runs(
    make_scheduler: SchedulerFactory, workers: Callable[..., Worker], store_url: str, record_file: Path
) -> None:
    runs, outcomes = await run_policy(make_scheduler, workers, store_url, record_file, "cancel_other")
    assert most_at_once(runs) == 1
    cancelled = [run for run in runs if run.cancelled]
    assert len(cancelled) >= 2 and not runs[-1].cancelled  # the last one, left alone, ended
    assert outcomes.get("cancelled", 0) == len(cancelled)
    for earlier, later in itertools.pairwise(runs):
        assert later.fire_time > earlier.fire_time


@pytest.mark.parametrize("store_url", STORES, indirect=True)
async def test_allow_all_runs_up_to_max_instances_at_once(
    make_scheduler: SchedulerFactory, workers: Callable[..., Worker], store_url: str, record_file: Path
) -> None:
    # runs of 2.5 s every second: three would go at once without the bound
    runs, outcomes = await run_policy(
        make_scheduler, workers, store_url, record_file, "allow_all", work=2.5, max_instances=2
    )
    assert most_at_once(runs) == 2
    assert all(run.start - run.fire_time < INTERVAL for run in runs)  # on time, never kept
    assert outcomes.get("skipped", 0) >= 1 and outcomes["success"] == len(runs)
