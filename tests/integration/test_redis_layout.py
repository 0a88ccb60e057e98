"""The Redis store's key layout version: written on first open, an older layout migrated once
(under the layout lock) and then behaving as a fresh store, a newer one refused untouched."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
import zlib
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import pytest
import redis.asyncio

from backbeat.errors import StoreError
from backbeat.model.history import HistoryEntry, HistoryOutcome, HistoryQuery, to_us
from backbeat.stores.redis import RedisStore, codec
from backbeat.stores.redis.connection import Client
from backbeat.stores.redis.history import task_member
from backbeat.stores.redis.keys import Keys
from backbeat.stores.redis.layout import MIGRATIONS, LayoutMigration, latest
from tests.contract.helpers import T0, task
from tests.contract.test_history import entry
from tests.integration.redis_layouts import (
    downgrade_history_to_3,
    downgrade_history_to_6,
    downgrade_to_2,
    downgrade_to_4,
)
from tests.integration.upgrades import observe, write_history
from tests.redis_server import delete_keys, usable_redis_url

pytestmark = pytest.mark.redis

NEXT = latest(MIGRATIONS) + 1


async def count_migration(client: Client, keys: Keys) -> None:
    """A later release's migration, which counts how often it ran."""
    await asyncio.sleep(0.05)  # long enough for a second opener to run it too, were it not locked out
    await client.incr(f"{keys.base}migrated")


class NextStore(RedisStore):
    """A store of a later release, with one more layout migration."""

    layout_migrations = (*MIGRATIONS, LayoutMigration(NEXT, "counted", count_migration))


@pytest.fixture
async def client() -> AsyncIterator[redis.asyncio.Redis]:
    client = redis.asyncio.Redis.from_url(usable_redis_url())
    yield client
    await client.aclose()


@pytest.fixture
async def prefixes() -> AsyncIterator[Callable[[], str]]:
    """Fresh key prefixes; their keys are deleted after the test."""
    made: list[str] = []

    def make() -> str:
        made.append(f"test-{uuid.uuid4().hex[:12]}")
        return made[-1]

    yield make
    for prefix in made:
        await delete_keys(usable_redis_url(), prefix)


async def written(store: RedisStore) -> None:
    await store.open()
    try:
        await write_history(store)
    finally:
        await store.close()


async def observed(store: RedisStore) -> list[object]:
    await store.open()
    try:
        return await observe(store)
    finally:
        await store.close()


async def recorded_in_two_stores(
    prefixes: Callable[[], str], count: int, *, per_call: int
) -> tuple[list[HistoryEntry], RedisStore, RedisStore]:
    """``count`` history entries of seven tasks, three to an end time (a second apart from T0),
    four failures in five, recorded ``per_call`` a call in two stores under fresh prefixes (left
    closed): one for a test to take back to an older layout, one to compare it with."""
    entries = [
        entry(
            f"task-{i % 7}",
            T0 + timedelta(seconds=i // 3),
            HistoryOutcome.FAILURE if i % 5 else HistoryOutcome.SUCCESS,
        )
        for i in range(count)
    ]
    stores = [RedisStore(usable_redis_url(), prefix=prefixes()) for _ in range(2)]
    for store in stores:
        await store.open()
        try:
            for first in range(0, count, per_call):
                await store.record_history(entries[first : first + per_call])
        finally:
            await store.close()
    return entries, stores[0], stores[1]


async def snapshot(client: redis.asyncio.Redis, prefix: str) -> dict[bytes, bytes | None]:
    """Every key of the prefix with its serialized value."""
    keys = sorted([key async for key in client.scan_iter(match=f"{{{prefix}}}*", count=1000)])
    return {key: await client.dump(key) for key in keys}


async def test_a_new_store_records_the_current_layout(
    client: redis.asyncio.Redis, prefixes: Callable[[], str]
) -> None:
    store = RedisStore(usable_redis_url(), prefix=prefixes())
    await store.open()
    await store.close()
    assert await client.get(store.keys.layout) == str(latest(MIGRATIONS)).encode() == b"7"


async def test_a_store_written_before_the_layout_version_is_migrated_and_then_behaves_as_a_fresh_one(
    client: redis.asyncio.Redis, prefixes: Callable[[], str]
) -> None:
    old, fresh = (
        RedisStore(usable_redis_url(), prefix=prefixes()),
        RedisStore(usable_redis_url(), prefix=prefixes()),
    )
    await written(old)
    await written(fresh)
    # what the first release left behind: no layout version, no orphaned index nor its marker
    await downgrade_to_2(client, old.keys)
    await client.delete(old.keys.layout, old.keys.orphans_indexed, old.keys.orphaned)

    migrated = await observed(RedisStore(usable_redis_url(), prefix=old.keys.prefix))

    assert await client.get(old.keys.layout) == b"7"
    assert await client.exists(old.keys.orphans_indexed)
    assert migrated == await observed(RedisStore(usable_redis_url(), prefix=fresh.keys.prefix))
    assert migrated[0] != ([], None)  # the history's tasks were there to compare


async def test_full_documents_of_layout_1_read_as_the_lean_ones_of_layout_2(
    client: redis.asyncio.Redis, prefixes: Callable[[], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    old, fresh = (
        RedisStore(usable_redis_url(), prefix=prefixes()),
        RedisStore(usable_redis_url(), prefix=prefixes()),
    )
    with monkeypatch.context() as layout_1:  # what a layout-1 release wrote: every field, the id too
        layout_1.setattr(codec, "document", lambda task, nrt=None: task.to_bytes())
        await written(old)
    await downgrade_to_2(client, old.keys, lean=False)
    await client.set(old.keys.layout, "1")
    await written(fresh)
    full, lean = (await client.hvals(old.keys.tasks), await client.hvals(fresh.keys.tasks))
    assert sum(map(len, lean)) < sum(map(len, full)) / 2

    migrated = await observed(RedisStore(usable_redis_url(), prefix=old.keys.prefix))

    assert await client.get(old.keys.layout) == b"7"
    assert migrated == await observed(RedisStore(usable_redis_url(), prefix=fresh.keys.prefix))
    assert migrated[0] != ([], None)


async def test_an_older_layout_is_migrated_once_by_concurrent_opens(
    client: redis.asyncio.Redis, prefixes: Callable[[], str]
) -> None:
    prefix = prefixes()
    await written(RedisStore(usable_redis_url(), prefix=prefix))
    stores = [NextStore(usable_redis_url(), prefix=prefix) for _ in range(4)]
    keys = stores[0].keys
    try:
        # another process is migrating: every opener reads version 1 and waits for the lock
        await client.set(keys.layout_lock, "another", px=60_000)
        opening = asyncio.gather(*(store.open() for store in stores))
        await asyncio.sleep(0.3)
        await client.delete(keys.layout_lock)
        await asyncio.wait_for(opening, 10)
        assert await client.get(keys.layout) == str(NEXT).encode()
        assert await client.get(f"{keys.base}migrated") == b"1"
        assert not await client.exists(keys.layout_lock)
        assert [len((await store.list())[0]) for store in stores] == [4] * len(stores)
    finally:
        for store in stores:
            await store.close()


async def test_opening_a_current_layout_takes_no_lock(
    client: redis.asyncio.Redis, prefixes: Callable[[], str]
) -> None:
    prefix = prefixes()
    await written(RedisStore(usable_redis_url(), prefix=prefix))
    current = RedisStore(usable_redis_url(), prefix=prefix)
    migrating = NextStore(usable_redis_url(), prefix=prefix)
    await client.set(current.keys.layout_lock, "another", px=60_000)
    try:
        await asyncio.wait_for(current.open(), 2)
        with pytest.raises(TimeoutError):  # the check can fail: a migrating open waits for the lock
            await asyncio.wait_for(migrating.open(), 1)
    finally:
        await current.close()
        await migrating.close()
    assert await client.get(current.keys.layout) == b"7"


async def test_a_newer_layout_is_refused_naming_both_versions_and_left_as_it_was(
    client: redis.asyncio.Redis, prefixes: Callable[[], str]
) -> None:
    prefix = prefixes()
    store = RedisStore(usable_redis_url(), prefix=prefix)
    await written(store)
    await client.set(store.keys.layout, str(NEXT))
    before = await snapshot(client, prefix)

    known = rf"key layout version {NEXT}, made by a newer backbeat \(this one knows version {NEXT - 1}\)"
    with pytest.raises(StoreError, match=known):
        await store.open()
    await store.close()

    assert await snapshot(client, prefix) == before


async def test_a_layout_2_store_is_migrated_to_records_a_bucketed_id_index_and_a_claims_index(
    client: redis.asyncio.Redis, prefixes: Callable[[], str]
) -> None:
    old, fresh = (
        RedisStore(usable_redis_url(), prefix=prefixes()),
        RedisStore(usable_redis_url(), prefix=prefixes()),
    )
    for store in (old, fresh):
        await store.open()
        try:
            await write_history(store)
            await store.add([task(f"many-{i:04}", at=T0 + timedelta(days=1)) for i in range(300)])
            await store.add([task("claimed")])  # claimed by a process that died: its claim lapses at once
            await store.claim_due("dead", now=T0, lease=timedelta(0), limit=1)
            await store.enqueue_run("many-0000", fire_time=T0, now=T0 + timedelta(hours=1))  # a waiting run
        finally:
            await store.close()
    await downgrade_to_2(client, old.keys)
    assert await client.zscore(old.keys.schedule, "claimed") is not None  # layout 2 kept claims there
    waiting_run = f"many-0000@{T0.isoformat()}"
    assert await client.zscore(old.keys.leases, waiting_run) is not None  # and waiting runs here

    migrated = await observed(RedisStore(usable_redis_url(), prefix=old.keys.prefix))

    assert await client.get(old.keys.layout) == b"7"
    assert not await client.exists(old.keys.live, old.keys.ids)
    assert await client.zrange(old.keys.waiting, 0, -1) == [waiting_run.encode()]
    assert migrated == await observed(RedisStore(usable_redis_url(), prefix=fresh.keys.prefix))
    assert len(migrated[0][0]) == 305  # type: ignore[index]
    boundaries: list[Any] = await client.zrange(old.keys.id_index, 0, -1)
    assert len(boundaries) > 2
    for boundary in boundaries:
        assert await client.object("encoding", old.keys.id_bucket(boundary.decode())) == b"listpack"


async def test_a_layout_3_run_history_is_migrated_to_one_per_task_index_and_reads_as_a_fresh_one(
    client: redis.asyncio.Redis, prefixes: Callable[[], str]
) -> None:
    _, old, fresh = await recorded_in_two_stores(prefixes, 250, per_call=250)
    await downgrade_history_to_3(client, old.keys)
    assert await client.scard(old.keys.history_tasks) == 7
    assert await client.zcard(old.keys.task_history("task-3")) > 0

    queries = [
        HistoryQuery(limit=1000),
        *(HistoryQuery(task_id=f"task-{i}", limit=10) for i in range(8)),
        HistoryQuery(task_id="task-2", since=T0 + timedelta(seconds=40), limit=1000),
    ]

    async def pages(store: RedisStore) -> list[object]:
        await store.open()
        try:
            seen: list[object] = [await store.run_history(query) for query in queries]
            _, cursor = await store.run_history(HistoryQuery(task_id="task-4", limit=5))
            seen.append(await store.run_history(HistoryQuery(task_id="task-4", limit=5, cursor=cursor)))
            seen.append(await store.prune_history(["task-1"], before=T0 + timedelta(seconds=30), keep=10))
            seen.append(await store.run_history(HistoryQuery(task_id="task-1", limit=1000)))
            return seen
        finally:
            await store.close()

    migrated = await pages(RedisStore(usable_redis_url(), prefix=old.keys.prefix))

    assert await client.get(old.keys.layout) == b"7"
    assert not await client.exists(
        old.keys.history_tasks, *(old.keys.task_history(f"task-{i}") for i in range(7))
    )
    assert migrated == await pages(RedisStore(usable_redis_url(), prefix=fresh.keys.prefix))
    assert len(migrated[0][0]) == 250  # type: ignore[index]
    # the 90 entries of any task older than 30 s, and task-1's 23 newer ones but the newest 10
    assert migrated[-2] == 90 + 13
    assert len(migrated[-1][0]) == 10  # type: ignore[index]


async def test_a_layout_4_store_lists_every_task_in_order_and_then_keeps_new_ids_in_the_recent_list(
    client: redis.asyncio.Redis, prefixes: Callable[[], str]
) -> None:
    store = RedisStore(usable_redis_url(), prefix=prefixes())
    await store.open()
    try:
        await store.add([task(f"many-{i:04}") for i in range(300)])
        for i in range(30):
            await store.add([task(f"one-{i:02}")])
        assert await client.llen(store.keys.recent_ids) == 30
        await store.remove(["one-03", "many-0007"])
    finally:
        await store.close()
    await downgrade_to_4(client, store.keys)
    assert not await client.exists(store.keys.recent_ids)
    expected = sorted(
        ({f"many-{i:04}" for i in range(300)} | {f"one-{i:02}" for i in range(30)}) - {"one-03", "many-0007"}
    )

    reopened = RedisStore(usable_redis_url(), prefix=store.keys.prefix)
    await reopened.open()
    try:
        assert await client.get(store.keys.layout) == b"7"
        listed, _ = await reopened.list()
        assert [t.id for t in listed] == expected
        await reopened.add([task("one-03")])
        assert await client.lrange(store.keys.recent_ids, 0, -1) == [b"one-03"]
        listed, _ = await reopened.list()
        assert [t.id for t in listed] == sorted([*expected, "one-03"])
    finally:
        await reopened.close()


async def test_history_entries_of_layout_6_read_page_and_prune_beside_batches_as_a_fresh_stores(
    client: redis.asyncio.Redis, prefixes: Callable[[], str]
) -> None:
    # 450 entries, three to an end time (ties across the two layouts and past a read of 200):
    # about half of them, all through time, rewritten as layout 6 kept them, as a process of
    # that layout would have written them while others were upgraded
    entries, mixed, fresh = await recorded_in_two_stores(prefixes, 450, per_call=50)
    await downgrade_history_to_6(client, mixed.keys, which=lambda entry_id: zlib.crc32(entry_id) % 2 == 1)
    old = await client.zcard(mixed.keys.history)
    assert 150 < old < 300
    members: list[Any] = await client.zrange(mixed.keys.history_by_task, 0, -1)
    assert sum(member.count(b"\0") == 3 for member in members) == 450 - old

    async def pages(store: RedisStore) -> list[object]:
        await store.open()
        try:
            seen: list[object] = []
            for query in (
                HistoryQuery(limit=1000),
                HistoryQuery(limit=1000, outcomes=frozenset({HistoryOutcome.SUCCESS})),
                HistoryQuery(limit=1000, since=T0 + timedelta(seconds=90)),
                *(HistoryQuery(task_id=f"task-{i}", limit=1000) for i in range(8)),
            ):
                seen.append(await store.run_history(query))
            for task_id in (None, "task-3"):
                cursor: str | None = None
                while True:  # small pages, each cursor at an end time shared with others
                    page, cursor = await store.run_history(
                        HistoryQuery(task_id=task_id, limit=7, cursor=cursor)
                    )
                    seen.append(page)
                    if cursor is None:
                        break
            seen.append(await store.prune_history(["task-1"], before=T0 + timedelta(seconds=60), keep=10))
            seen.append(await store.prune_history([], before=T0 + timedelta(seconds=130), keep=1000))
            seen.append(await store.run_history(HistoryQuery(limit=1000)))
            seen.append(await store.run_history(HistoryQuery(task_id="task-1", limit=1000)))
            return seen
        finally:
            await store.close()

    got, want = await pages(mixed), await pages(fresh)
    assert got == want
    assert len(got[0][0]) == 450  # type: ignore[index]
    assert [e.id for e in got[0][0]] == [  # type: ignore[index]
        e.id for e in sorted(entries, key=lambda e: (e.ended_at, e.id), reverse=True)
    ]
    # every entry older than 60 s (180), and task-1's newer ones but its newest 10 (29); then
    # those older than 130 s (210, 29 of them gone already), of both layouts
    assert got[-4] == 180 + 29
    assert got[-3] == 210 - 29
    assert len(got[-2][0]) == 60  # type: ignore[index]
    # the batches of entries all pruned are gone with them; the others keep their count
    live: dict[bytes, bytes] = await client.hgetall(fresh.keys.history_live)  # type: ignore[assignment]
    assert live == {b"8": b"10", b"9": b"50"}
    windows: list[Any] = await client.zrange(fresh.keys.history_at, 0, -1)
    assert {window.partition(b".")[0] for window in windows} == {b"8", b"9"}
    for batch in range(1, 10):
        assert await client.exists(fresh.keys.history_batch(batch)) == (batch >= 8)


async def test_a_batch_whose_members_a_layout_6_process_pruned_goes_with_its_last_window(
    client: redis.asyncio.Redis, prefixes: Callable[[], str]
) -> None:
    store = RedisStore(usable_redis_url(), prefix=prefixes())
    await store.open()
    try:
        await store.record_history([entry("pay", T0 + timedelta(seconds=i)) for i in range(5)])
        # a process of layout 6 prunes the per-task index by count: it removes members (three of
        # the batch's five) and counts nothing down
        members: list[Any] = await client.zrange(store.keys.history_by_task, 0, -1)
        await client.zrem(store.keys.history_by_task, *members[:3])

        assert await store.prune_history([], before=T0 + timedelta(days=1), keep=100) == 2

        assert await client.zcard(store.keys.history_by_task) == 0
        assert await client.zcard(store.keys.history_at) == 0
        assert not await client.exists(store.keys.history_batch(1), store.keys.history_live)
    finally:
        await store.close()


async def test_entries_of_layout_6_past_their_age_leave_every_key_even_one_that_cannot_be_read(
    client: redis.asyncio.Redis, prefixes: Callable[[], str]
) -> None:
    store = RedisStore(usable_redis_url(), prefix=prefixes())
    await store.open()
    try:
        old = [
            entry("pay", T0),
            entry("mail", T0 + timedelta(seconds=1)),
            entry("pay", T0 + timedelta(seconds=2)),
        ]
        await store.record_history(old)
        await downgrade_history_to_6(client, store.keys, which=lambda entry_id: True)
        await client.hset(store.keys.history_docs, old[1].id, b"not json")  # its task is not known

        # by age alone, no task named: each id leaves the end-time index and the documents
        assert await store.prune_history([], before=T0 + timedelta(seconds=10), keep=100) == 3
        assert await client.zcard(store.keys.history) == 0
        assert await client.hlen(store.keys.history_docs) == 0
        # the unreadable one's per-task member stays until its task is pruned (its task was not
        # known), read as gone
        assert await store.run_history(HistoryQuery(task_id="mail")) == ([], None)
        assert await store.prune_history(["mail"], before=T0 + timedelta(seconds=10), keep=100) == 0
        assert await client.zcard(store.keys.history_by_task) == 0
    finally:
        await store.close()


async def test_an_entry_a_layout_6_process_records_again_beside_its_batch_is_listed_once(
    client: redis.asyncio.Redis, prefixes: Callable[[], str]
) -> None:
    store = RedisStore(usable_redis_url(), prefix=prefixes())
    await store.open()
    try:
        done, other = entry("pay", T0), entry("pay", T0 + timedelta(seconds=1))
        await store.record_history([done, other])
        # a process of layout 6 records it again (a retried call): it looks for the id among its
        # documents alone, so it writes the entry as layout 6 did beside its batch's member
        end = to_us(done.ended_at)
        await client.hset(store.keys.history_docs, done.id, done.to_bytes())
        await client.zadd(store.keys.history, {done.id: end})
        await client.zadd(store.keys.history_by_task, {task_member("pay", end, done.id): 0})

        for query in (HistoryQuery(limit=10), HistoryQuery(limit=10, task_id="pay")):
            for limit in (10, 1):
                seen: list[str] = []
                page_query: HistoryQuery | None = dataclasses.replace(query, limit=limit)
                while page_query is not None:
                    page, cursor = await store.run_history(page_query)
                    seen += [e.id for e in page]
                    page_query = (
                        None if cursor is None else dataclasses.replace(query, limit=limit, cursor=cursor)
                    )
                assert seen == [other.id, done.id], (query, limit)
    finally:
        await store.close()
