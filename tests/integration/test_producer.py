"""A producer-only scheduler (``role="producer"``): it stores tasks for workers elsewhere, with or
without ``start()``, on the real stores."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio

from tests.integration import jobs
from tests.redis_server import usable_redis_url
from tests.scheduling import SchedulerFactory, wait_for


@pytest.fixture(
    params=[pytest.param("sqlite", marks=pytest.mark.sqlite), pytest.param("redis", marks=pytest.mark.redis)]
)
async def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'producer.db'}"
        return
    base, prefix = usable_redis_url(), f"producer-{uuid.uuid4().hex[:10]}"
    yield f"{base}?prefix={prefix}"
    client = redis.asyncio.Redis.from_url(base)
    try:
        keys = [key async for key in client.scan_iter(match=f"{{{prefix}}}*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.mark.parametrize("started", [False, True], ids=["never-started", "started"])
async def test_a_producer_stores_concurrent_adds_that_a_worker_runs(
    make_scheduler: SchedulerFactory, store_url: str, record_file: Path, started: bool
) -> None:
    producer = make_scheduler(store_url, role="producer")
    if started:
        await producer.start_async()
    adds = (
        producer.schedule_immediate_task(f"job {i}", jobs.note, args=[str(record_file), f"job {i}"])
        for i in range(100)
    )
    ids = await asyncio.gather(*adds)
    assert len(set(ids)) == 100
    assert producer._router.engine is None  # it claims nothing: the tasks wait for a worker
    assert len(await producer.list_tasks()) == 100

    worker = make_scheduler(store_url)
    await worker.start_async()
    await wait_for(lambda: record_file.exists() and len(jobs.read_records(record_file)) == 100, timeout=30)
    labels = sorted(record["label"] for record in jobs.read_records(record_file))
    assert labels == sorted(f"job {i}" for i in range(100))

    await producer.shutdown()
    assert not producer.running
