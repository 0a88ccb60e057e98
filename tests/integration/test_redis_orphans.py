"""The Redis store's orphaned-task index: listing orphans reads only them, and a store written
before the index existed gets it built when opened."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
import redis.asyncio

from backbeat.model.records import Task, TaskFilter
from backbeat.stores.redis import RedisStore
from tests.integration.redis_layouts import downgrade_to_2
from tests.redis_server import delete_keys, usable_redis_url

pytestmark = pytest.mark.redis


@pytest.fixture
async def names() -> AsyncIterator[tuple[str, str]]:
    url, prefix = usable_redis_url(), f"test-{uuid.uuid4().hex[:12]}"
    yield url, prefix
    await delete_keys(url, prefix)


def task(task_id: str, orphaned: str | None = None) -> Task:
    return Task(
        id=task_id,
        name=task_id,
        job="tests:job",
        trigger={"type": "date"},
        next_run_time=datetime(2030, 1, 1, tzinfo=UTC),
        orphaned=orphaned,
    )


async def test_orphans_are_listed_from_their_index(names: tuple[str, str]) -> None:
    url, prefix = names
    store = RedisStore(url, prefix=prefix)
    await store.open()
    try:
        await store.add([task("a"), task("b", orphaned="gone"), task("c")])
        await store.update("c", orphaned="renamed")
        await store.update("b", orphaned=None)
        page, _ = await store.list(TaskFilter(orphaned=True))
        assert [t.id for t in page] == ["c"]
        client = redis.asyncio.Redis.from_url(url)
        try:
            assert await client.zrange(store.keys.orphaned, 0, -1) == [b"c"]
            await store.remove(["c"])
            assert await client.zrange(store.keys.orphaned, 0, -1) == []
        finally:
            await client.aclose()
    finally:
        await store.close()


async def test_a_store_written_before_the_index_gets_it_on_open(names: tuple[str, str]) -> None:
    url, prefix = names
    first = RedisStore(url, prefix=prefix)
    await first.open()
    await first.add([task("a"), task("b", orphaned="gone")])
    await first.close()
    client = redis.asyncio.Redis.from_url(url)
    try:  # what an older release left behind: no index, no marker, no key layout version
        await downgrade_to_2(client, first.keys)
        await client.delete(first.keys.orphaned, first.keys.orphans_indexed, first.keys.layout)
    finally:
        await client.aclose()
    again = RedisStore(url, prefix=prefix)
    await again.open()
    try:
        page, _ = await again.list(TaskFilter(orphaned=True))
        assert [t.id for t in page] == ["b"]
    finally:
        await again.close()
