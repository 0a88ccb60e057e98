"""Run history across processes on Redis: two worker processes and a producer, the workers
restarted, and one ``backbeat runs list`` that shows the runs of all of them."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from backbeat import BackgroundTaskScheduler
from tests.integration import jobs
from tests.integration.test_cli import backbeat
from tests.redis_server import delete_keys, usable_redis_url
from tests.scheduling import SchedulerFactory, Worker, wait_for

pytestmark = pytest.mark.redis


@pytest.fixture
async def redis_store() -> AsyncIterator[tuple[str, str]]:
    """A Redis store URL of a fresh key prefix, and that prefix (its keys deleted after)."""
    base, prefix = usable_redis_url(), f"history-{uuid.uuid4().hex[:10]}"
    yield f"{base}?prefix={prefix}", prefix
    await delete_keys(base, prefix)


def pids(records: list[dict[str, object]]) -> set[object]:
    return {record["pid"] for record in records}


async def test_one_cli_call_lists_the_runs_of_a_producer_and_two_restarted_workers(
    make_scheduler: SchedulerFactory,
    redis_store: tuple[str, str],
    record_file: Path,
    workers: Callable[..., Worker],
) -> None:
    url, _ = redis_store
    producer: BackgroundTaskScheduler = make_scheduler(url, role="producer")
    await producer.start_async()
    started: list[Worker] = []

    def start_two() -> None:
        for _ in range(2):
            started.append(workers(url, "--lease", "2"))

    async def run_batch(label: str, count: int) -> None:
        before = len(jobs.read_records(record_file))
        for i in range(count):
            await producer.schedule_immediate_task(
                f"{label}-{i}", jobs.slow, args=[str(record_file), 0.05, label]
            )
        await wait_for(lambda: len(jobs.read_records(record_file)) >= before + 2 * count, timeout=30)

    start_two()
    await run_batch("before", 20)
    first = [w.process.pid for w in started]
    for worker in started:
        assert worker.stop() == 0  # a graceful stop records what its runs did
    start_two()
    await run_batch("after", 20)
    second = [w.process.pid for w in started[2:]]
    ran_here: list[int] = []

    async def local_job() -> None:  # a closure: the producer's own (local) task
        ran_here.append(os.getpid())

    await producer.schedule_immediate_task("producer-local", local_job)
    await wait_for(lambda: ran_here == [os.getpid()])
    for worker in started[2:]:
        assert worker.stop() == 0
    await producer.stop_async()

    result = await asyncio.to_thread(backbeat, "runs", "list", "--store", url, "--limit", "1000", "--json")
    assert result.returncode == 0, result.stderr
    runs = json.loads(result.stdout)["runs"]

    by_pid: dict[int, set[str]] = {}
    for run in runs:
        assert run["outcome"] == "success"
        by_pid.setdefault(run["pid"], set()).add(run["task_name"].split("-")[0])
    worker_records = jobs.read_records(record_file)
    assert pids([r for r in worker_records if r["event"] == "start"]) <= set(first + second)
    assert set(by_pid) <= {*first, *second, os.getpid()}
    assert os.getpid() in by_pid and by_pid[os.getpid()] == {"producer"}
    assert {pid for pid in first if pid in by_pid} and {pid for pid in second if pid in by_pid}
    assert all(by_pid[pid] == {"before"} for pid in first if pid in by_pid)
    assert all(by_pid[pid] == {"after"} for pid in second if pid in by_pid)
    assert len(runs) == 41  # every run once: 20 before the restart, 20 after, the producer's
