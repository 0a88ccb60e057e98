"""Fault scenarios that every server-backed store must survive, written once (Redis, PostgreSQL)."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from backbeat import StoreUnavailableError
from tests.integration import jobs
from tests.scheduling import ROOT, SchedulerFactory, Worker, wait_for


def labels(record_file: Path, label: str, after: float = 0.0) -> list[float]:
    """Start times (or run times) of the runs with ``label`` recorded after ``after``."""
    return [
        r["t"]
        for r in jobs.read_records(record_file)
        if r["label"] == label and r["event"] in ("run", "start") and r["t"] > after
    ]


def run_keys_seen_twice(record_file: Path) -> dict[str, int]:
    """Run ids (fire times) recorded more than once."""
    seen = Counter(r["run_id"] for r in jobs.read_records(record_file) if r["event"] in ("run", "start"))
    return {key: n for key, n in seen.items() if n > 1}


async def worker_survives_a_restart(
    url: str,
    *,
    crash: Callable[[], None],
    restart: Callable[[], None],
    make_scheduler: SchedulerFactory,
    record_file: Path,
    workers: Callable[..., Worker],
    log: Path,
) -> str:
    """A worker process (lease 1 s) goes on through its server's crash and restart: nothing runs
    during the outage, tasks due in it run once after it, a task added after it runs, the
    recurring task resumes, no run key runs twice, and the worker stops gracefully. Returns the
    worker's log for the caller's store-specific checks."""
    worker = workers(url, "--lease", "1", log=log)
    producer = make_scheduler(url, producer_only=True)
    await producer.start()
    path = str(record_file)
    await producer.add_task(jobs.note, "interval", seconds=0.3, args=[path, "tick"], id="ticker")
    await wait_for(lambda: len(labels(record_file, "tick")) >= 3)
    # due while the server is down, and soon after it is back
    due = datetime.now(UTC)
    for i, delay in enumerate((0.5, 1.0, 3.5, 4.0)):
        await producer.schedule_at(
            f"before-{i}",
            jobs.note,
            scheduled_time=due + timedelta(seconds=delay),
            args=[path, f"before-{i}"],
        )
    await asyncio.to_thread(crash)
    down = time.time()
    await asyncio.sleep(2.0)
    assert worker.process.poll() is None, worker.errors()
    assert labels(record_file, "tick", after=down + 0.5) == [], "nothing runs without the store"
    restarting = time.time()  # the worker may run tasks before the restart returns: compare with this
    await asyncio.to_thread(restart)  # same port and data: what was committed is back
    up = time.time()
    # the producer's pooled connections died with the server: its first call reconnects
    await producer.schedule_immediate_task("after", jobs.note, args=[path, "after"])
    for i in range(4):
        await wait_for(lambda i=i: labels(record_file, f"before-{i}") != [], timeout=15)  # type: ignore[misc]
    await wait_for(lambda: labels(record_file, "after") != [], timeout=15)
    await wait_for(lambda: len(labels(record_file, "tick", after=up)) >= 3, timeout=15)
    assert worker.process.poll() is None, worker.errors()
    for i in range(4):
        assert len(labels(record_file, f"before-{i}")) == 1
        assert labels(record_file, f"before-{i}")[0] > restarting, "a task due in the outage ran after it"
    assert len(labels(record_file, "after")) == 1
    assert run_keys_seen_twice(record_file) == {}, "every run key ran exactly once"
    assert [t.id for t in await producer.list_tasks()] == ["ticker"]  # the one-shots are gone
    assert worker.stop() == 0, worker.errors()  # a graceful stop after the outage
    worker_log = worker.errors()
    claim_errors = worker_log.count("store error while claiming due work (will retry)")
    # retried with backoff (0.05 s doubling, up to 5 s): about 6 tries in the first 2 s and at
    # most one a second after (a slow restart on a loaded machine lengthens the outage), never
    # a busy loop (which would be tens a second)
    outage = up - down
    assert 1 <= claim_errors <= 8 + outage, (
        f"{claim_errors} claim errors in a {outage:.1f} s outage:\n{worker_log}"
    )
    return worker_log


async def worker_fails_to_start(url: str) -> str:
    """Start a worker process on ``url``, where no store answers: it must exit at once (< 15 s),
    non-zero, without saying it is ready. Returns its stderr, which should say why."""
    started = time.monotonic()
    process = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "tests.integration.worker", url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert process.returncode != 0
    assert "ready" not in process.stdout
    assert time.monotonic() - started < 15
    return process.stderr


async def start_fails_on_a_silent_server(
    make_scheduler: SchedulerFactory, store_at: Callable[[int], Any]
) -> None:
    """A scheduler whose server accepts connections but never answers (``store_at(port)``,
    with a short client timeout) fails its start within 8 s, naming where, instead of hanging."""
    with socket.socket() as silent:  # accepts connections (the kernel's backlog), never replies
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        port = silent.getsockname()[1]
        scheduler = make_scheduler(store_at(port))
        started = time.monotonic()
        with pytest.raises(StoreUnavailableError, match=rf"127\.0\.0\.1:{port}"):
            await scheduler.start()
        assert time.monotonic() - started < 8
        assert not scheduler.running
