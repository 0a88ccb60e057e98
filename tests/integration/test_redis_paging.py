"""Listing a big Redis store page by page: the id index (key layout 3) gives every task once, in
id order, across its buckets, while tasks come and go between pages."""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio

from backbeat import BackgroundTaskScheduler, SchedulerConfig
from backbeat.stores.redis import RedisStore
from tests.integration.test_redis_store import delete_keys, task
from tests.redis_server import usable_redis_url

pytestmark = pytest.mark.redis

N = 5000
PAGE = 100


@pytest.fixture
async def store() -> AsyncIterator[RedisStore]:
    prefix = f"test-{uuid.uuid4().hex[:12]}"
    store = RedisStore(usable_redis_url(), prefix=prefix)
    await store.open()
    yield store
    await store.close()
    await delete_keys(usable_redis_url(), prefix)


def new_ids(rng: random.Random, n: int) -> list[str]:
    return [f"{rng.getrandbits(128):032x}" for _ in range(n)]


async def test_pages_of_100_give_5000_tasks_once_each_in_id_order(store: RedisStore) -> None:
    ids = new_ids(random.Random(1), N)
    await store.add([task(task_id) for task_id in ids])

    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        page, cursor = await store.list(cursor=cursor, limit=PAGE)
        assert len(page) == PAGE or cursor is None
        seen += [t.id for t in page]
        pages += 1
        if cursor is None:
            break

    assert seen == sorted(ids)
    assert pages == N // PAGE
    client = redis.asyncio.Redis.from_url(usable_redis_url())
    try:  # the pages crossed buckets, each small enough to stay a listpack
        boundaries: list[Any] = await client.zrange(store.keys.id_index, 0, -1)
        assert len(boundaries) > N / 120
        for boundary in boundaries:
            assert await client.object("encoding", store.keys.id_bucket(boundary.decode())) == b"listpack"
    finally:
        await client.aclose()


async def test_tasks_added_and_removed_between_pages_leave_the_others_seen_once_in_order(
    store: RedisStore,
) -> None:
    rng = random.Random(2)
    ids = new_ids(rng, N)
    await store.add([task(task_id) for task_id in ids])
    stored = set(ids)
    removed: set[str] = set()
    added: set[str] = set()

    seen: list[str] = []
    cursor: str | None = None
    while True:
        page, cursor = await store.list(cursor=cursor, limit=PAGE)
        seen += [t.id for t in page]
        if cursor is None:
            break
        gone = rng.sample(sorted(stored - removed), 40)  # some already seen, most still ahead
        assert sorted(await store.remove(gone)) == sorted(gone)
        removed.update(gone)
        fresh = new_ids(rng, 40)
        await store.add([task(task_id) for task_id in fresh])
        added.update(fresh)
        stored.update(fresh)

    assert seen == sorted(set(seen))  # in order, none twice
    kept = set(ids) - removed
    assert kept <= set(seen)  # every task there all along was seen
    assert not (set(seen) - kept - added - removed)
    assert removed & set(seen) and added & set(seen)  # the churn reached both sides of the cursor
    after, _ = await store.list(limit=N * 2)
    assert [t.id for t in after] == sorted(stored - removed)


async def noop(order_id: str) -> None:
    """The listed tasks' job (never runs)."""


async def test_the_scheduler_lists_a_redis_store_page_by_page(store: RedisStore) -> None:
    scheduler = BackgroundTaskScheduler(
        redis_url=usable_redis_url(),
        job_store_prefix=store.keys.prefix,
        config=SchedulerConfig(producer_only=True),
    )
    try:
        for i in range(250):
            await scheduler.schedule_delayed_task(f"remind-{i}", noop, 60, args=[f"A-{i}"], tags=("r",))
        with pytest.raises(ValueError, match="limit must be an integer from 1 to 1000, not 0"):
            await scheduler.list_tasks_page(limit=0)
        pages: list[list[str]] = []
        cursor: str | None = None
        while True:
            page = await scheduler.list_tasks_page(tag="r", cursor=cursor, limit=100)
            pages.append([info.id for info in page.tasks])
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert [len(ids) for ids in pages] == [100, 100, 50]
        listed = [task_id for ids in pages for task_id in ids]
        assert listed == sorted(info.id for info in await scheduler.list_tasks())
    finally:
        await scheduler.shutdown()
