"""A worker process on a private Redis that faults: restarted server, no server, corrupt record."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from backbeat import StoreUnavailableError
from backbeat.stores.redis.keys import Keys
from tests.chaos.scenarios import (
    labels,
    start_fails_on_a_silent_server,
    worker_fails_to_start,
    worker_survives_a_restart,
)
from tests.integration import jobs
from tests.redis_server import RedisServerHandle, free_port
from tests.scheduling import SchedulerFactory, Worker, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.redis]

KEYS = Keys("backbeat")  # the default prefix, which the worker's redis:// URL uses


async def test_a_worker_survives_a_redis_restart_and_resumes(
    private_redis: RedisServerHandle,
    make_scheduler: SchedulerFactory,
    record_file: Path,
    workers: Callable[..., Worker],
    tmp_path: Path,
) -> None:
    await worker_survives_a_restart(
        private_redis.url,
        crash=private_redis.kill,
        restart=private_redis.start,  # append-only data back
        make_scheduler=make_scheduler,
        record_file=record_file,
        workers=workers,
        log=tmp_path / "worker.log",
    )


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
    stderr = await worker_fails_to_start(f"redis://127.0.0.1:{port}/0")
    assert f"StoreUnavailableError: Redis at redis://127.0.0.1:{port}/0 is unavailable" in stderr


async def test_a_redis_that_accepts_but_never_answers_fails_the_start_instead_of_hanging(
    make_scheduler: SchedulerFactory,
) -> None:
    await start_fails_on_a_silent_server(
        make_scheduler, lambda port: f"redis://127.0.0.1:{port}/0?socket_timeout=1"
    )


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
