"""A worker process on a private Redis that faults: restarted server, no server, corrupt record."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis

from backbeat import StoreUnavailableError
from backbeat.stores.redis.keys import Keys
from tests.integration import jobs
from tests.redis_server import RedisServerHandle, free_port
from tests.scheduling import ROOT, SchedulerFactory, Worker, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.redis]

KEYS = Keys("backbeat")  # the default prefix, which the worker's redis:// URL uses


def labels(record_file: Path, label: str, after: float = 0.0) -> list[float]:
    """Start times (or run times) of the runs with ``label`` recorded after ``after``."""
    return [
        r["t"]
        for r in jobs.read_records(record_file)
        if r["label"] == label and r["event"] in ("run", "start") and r["t"] > after
    ]


async def test_a_worker_survives_a_redis_restart_and_resumes(
    private_redis: RedisServerHandle,
    make_scheduler: SchedulerFactory,
    record_file: Path,
    workers: Callable[..., Worker],
    tmp_path: Path,
) -> None:
    url = private_redis.url
    worker = workers(url, "--lease", "1", log=tmp_path / "worker.log")
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
    private_redis.kill()
    down = time.time()
    await asyncio.sleep(2.0)
    assert worker.process.poll() is None, worker.errors()
    assert labels(record_file, "tick", after=down + 0.5) == [], "nothing runs without the store"
    up = time.time()  # before the restart: a worker may reconnect before start() returns
    await asyncio.to_thread(private_redis.start)  # same port and directory: append-only data back
    # the producer's first call after the restart goes through on a dropped pooled connection
    # (the client's one quick retry reconnects it; it failed when that retry was redis-py's sync one)
    await producer.schedule_immediate_task("after", jobs.note, args=[path, "after"])
    for i in range(4):
        await wait_for(lambda i=i: labels(record_file, f"before-{i}") != [], timeout=15)  # type: ignore[misc]
    await wait_for(lambda: labels(record_file, "after") != [], timeout=15)
    await wait_for(lambda: len(labels(record_file, "tick", after=up)) >= 3, timeout=15)
    assert worker.process.poll() is None, worker.errors()
    for i in range(4):
        assert len(labels(record_file, f"before-{i}")) == 1
        assert labels(record_file, f"before-{i}")[0] > up, "a task due during the outage ran once it ended"
    assert await producer.list_tasks() != []  # the ticker is still there
    assert [t.id for t in await producer.list_tasks()] == ["ticker"]
    assert worker.stop() == 0, worker.errors()  # a graceful stop after the outage
    log = worker.errors()
    claim_errors = log.count("store error while claiming due work (will retry)")
    # retried with backoff (0.05 s doubling, up to 5 s): a handful of tries in 2 s, not a busy loop
    assert 1 <= claim_errors <= 10, log


async def test_a_scheduler_on_an_unreachable_redis_fails_promptly_with_a_clear_error(
    make_scheduler: SchedulerFactory,
) -> None:
    port = free_port()  # nothing listens there
    scheduler = make_scheduler(f"redis://127.0.0.1:{port}/0")
    started = time.monotonic()
    with pytest.raises(
        StoreUnavailableError, match=rf"Redis at redis://127\.0\.0\.1:{port}/0 is unavailable"
    ):
        await scheduler.start()
    assert time.monotonic() - started < 5
    assert not scheduler.running

    # a worker process started there exits at once, saying why
    started = time.monotonic()
    process = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "tests.integration.worker", f"redis://127.0.0.1:{port}/0"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert process.returncode != 0
    assert "ready" not in process.stdout
    assert f"StoreUnavailableError: Redis at redis://127.0.0.1:{port}/0 is unavailable" in process.stderr
    assert time.monotonic() - started < 15


async def test_a_redis_that_accepts_but_never_answers_fails_the_start_instead_of_hanging(
    make_scheduler: SchedulerFactory,
) -> None:
    with socket.socket() as silent:  # accepts connections (the kernel's backlog), never replies
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        port = silent.getsockname()[1]
        scheduler = make_scheduler(f"redis://127.0.0.1:{port}/0?socket_timeout=1")
        started = time.monotonic()
        with pytest.raises(StoreUnavailableError, match=rf"127\.0\.0\.1:{port}"):
            await scheduler.start()
        assert time.monotonic() - started < 8


async def test_a_corrupt_record_is_quarantined_while_the_worker_goes_on(
    private_redis: RedisServerHandle,
    make_scheduler: SchedulerFactory,
    record_file: Path,
    workers: Callable[..., Worker],
    tmp_path: Path,
) -> None:
    url = private_redis.url
    worker = workers(url, "--lease", "1", log=tmp_path / "worker.log")
    producer = make_scheduler(url, producer_only=True)
    await producer.start()
    path = str(record_file)
    for name in ("healthy", "victim"):
        await producer.add_task(jobs.note, "interval", seconds=0.2, args=[path, name], id=name)
    await wait_for(
        lambda: len(labels(record_file, "victim")) >= 2 and len(labels(record_file, "healthy")) >= 2
    )
    client = redis.Redis.from_url(url)
    try:
        client.hset(KEYS.tasks, "victim", b"{not json")
        for _ in range(100):
            quarantined = await producer.quarantined()
            if quarantined:
                break
            await asyncio.sleep(0.1)
        assert [(q.key, q.raw) for q in quarantined] == [("victim", "{not json")]
        assert "JSON" in quarantined[0].error
        settled = time.time() + 0.5  # a victim's run claimed before the corruption may still finish
        await producer.schedule_immediate_task("later", jobs.note, args=[path, "later"])
        await wait_for(lambda: labels(record_file, "later") != [])
        await wait_for(lambda: len(labels(record_file, "healthy", after=settled)) >= 5, timeout=15)
        assert labels(record_file, "victim", after=settled) == [], "the corrupt task is not run"
        assert worker.process.poll() is None, worker.errors()
        assert client.hget(KEYS.tasks, "victim") == b"{not json", "kept as it was"
        assert [q.key for q in await producer.quarantined()] == ["victim"]
        assert [t.id for t in await producer.list_tasks()] == ["healthy"]
    finally:
        client.close()
