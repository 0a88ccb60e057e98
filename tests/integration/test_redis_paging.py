"""Listing a big Redis store page by page: the id index (key layout 3) gives every task once, in
id order, across its buckets, while tasks come and go between pages."""

from __future__ import annotations

import itertools
import random
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio

from backbeat import BackgroundTaskScheduler, SchedulerConfig
from backbeat.stores.redis import RedisStore, scripts
from tests.integration.test_redis_store import task
from tests.redis_server import RedisServerHandle, delete_keys, private_redis_server, usable_redis_url

pytestmark = pytest.mark.redis

N = 5000
PAGE = 100


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


@pytest.fixture
def collating_server(tmp_path: Path) -> Iterator[RedisServerHandle]:
    """A private server under the en_US.UTF-8 locale, made for it with ``localedef``: its Lua
    compares strings by that locale's rules (case folded, punctuation ignored), not by bytes."""
    locales = tmp_path / "locales"
    if shutil.which("localedef") is None:
        pytest.skip("localedef is not installed")
    locales.mkdir()
    subprocess.run(
        ["localedef", "-i", "en_US", "-f", "UTF-8", str(locales / "en_US.UTF-8")],
        capture_output=True,
        check=False,
    )
    if not (locales / "en_US.UTF-8").exists():
        pytest.skip("the en_US locale's sources are not installed")
    locale = {"LOCPATH": str(locales), "LC_ALL": "en_US.UTF-8"}
    with private_redis_server(tmp_path / "redis", appendonly=False, env=locale) as handle:
        yield handle


async def test_the_index_keeps_id_order_on_a_server_whose_lua_orders_strings_otherwise(
    collating_server: RedisServerHandle,
) -> None:
    client = redis.asyncio.Redis.from_url(collating_server.url)
    store = RedisStore(collating_server.url, prefix="collated")
    try:
        assert await client.eval("return tostring('B' < 'a')", 0) == b"false"  # not byte order
        rng = random.Random(3)
        words = ["Task", "task", "TASK", "a-c", "ab", "a_b", "Zeta", "_x", "-y", "ä"]
        ids = [f"{rng.choice(words)}{rng.choice('-_.Aa')}{rng.getrandbits(32):x}" for _ in range(3000)]
        ids = sorted(set(ids))
        rng.shuffle(ids)
        await store.add([task(task_id) for task_id in ids[:2000]])  # batches of 1,000
        for start in range(2000, len(ids), 10):
            await store.add([task(task_id) for task_id in ids[start : start + 10]])

        listed, _ = await store.list(limit=len(ids) + 1)
        assert [t.id for t in listed] == sorted(ids)  # Python's str order is the bytes' here
        index = await buckets(client, store)  # split behind the shortest boundaries, as with byte order
        assert sum(len(bound) for bound, _ in index) < sum(len(members[0]) for _, members in index[1:])
        gone = set(ids[::7])  # a batch removed without byte order: a look-up per id
        assert sorted(await store.remove(list(gone))) == sorted(gone)
        listed, _ = await store.list(limit=len(ids) + 1)
        assert [t.id for t in listed] == sorted(set(ids) - gone)
        boundaries: list[Any] = await client.zrange(store.keys.id_index, 0, -1)
        for boundary in boundaries:
            assert await client.object("encoding", store.keys.id_bucket(boundary.decode())) == b"listpack"
        await assert_index_partitions(client, store, set(ids) - gone)
    finally:
        await store.close()
        await client.aclose()


async def test_buckets_split_without_copy_where_the_server_refuses_it(tmp_path: Path) -> None:
    with private_redis_server(tmp_path / "redis", appendonly=False) as server:
        admin = redis.asyncio.Redis.from_url(server.url)
        # as on Redis < 6.2, which has no COPY
        await admin.acl_setuser(
            "nocopy", enabled=True, passwords=["+pw"], keys=["*"], channels=["*"], commands=["+@all", "-copy"]
        )
        store = RedisStore(server.url.replace("redis://", "redis://nocopy:pw@"), prefix="nocopy")
        try:
            rng = random.Random(4)
            ids = new_ids(rng, 3000)
            await store.add([task(task_id) for task_id in ids[:2000]])
            for start in range(2000, len(ids), 10):
                await store.add([task(task_id) for task_id in ids[start : start + 10]])

            listed, _ = await store.list(limit=len(ids) + 1)
            assert [t.id for t in listed] == sorted(ids)
            boundaries: list[Any] = await admin.zrange(store.keys.id_index, 0, -1)
            assert len(boundaries) > len(ids) / 120
            for boundary in boundaries:
                assert await admin.object("encoding", store.keys.id_bucket(boundary.decode())) == b"listpack"
        finally:
            await store.close()
            await admin.aclose()


@pytest.mark.parametrize(("stored", "batch"), [(3000, 100), (30000, 150)])
async def test_a_batch_finds_its_buckets_in_one_read_of_the_boundaries(
    tmp_path: Path, stored: int, batch: int
) -> None:
    """A listpack of boundaries (up to 128) or a skiplist with few boundaries an id: a look-up per
    id (ZREVRANGEBYLEX, which walks a listpack) would cost more than reading them all."""
    with private_redis_server(tmp_path / "redis", appendonly=False) as server:
        admin = redis.asyncio.Redis.from_url(server.url)
        store = RedisStore(server.url, prefix="bounds")
        try:
            await store.open()
            rng = random.Random(5)
            ids = new_ids(rng, stored)
            for start in range(0, stored, 1000):
                await store.add([task(task_id) for task_id in ids[start : start + 1000]])
            bounds = await admin.zcard(store.keys.id_index)
            assert (bounds <= 128) == (stored < 5000)
            await admin.config_resetstat()
            fresh = new_ids(rng, batch)
            await store.add([task(task_id) for task_id in fresh])
            stats = await admin.info("commandstats")
            assert "cmdstat_zrevrangebylex" not in stats
            splits = await admin.zcard(store.keys.id_index) - bounds  # a split reads its bucket (ZRANGE)
            assert stats["cmdstat_zrange"]["calls"] <= 1 + splits
            listed, _ = await store.list(limit=stored + batch + 1)
            assert [t.id for t in listed] == sorted(ids + fresh)
        finally:
            await store.close()
            await admin.aclose()


async def test_a_batch_of_removals_finds_its_buckets_in_one_read_of_the_boundaries(tmp_path: Path) -> None:
    """A completion removes hundreds of finished one-shots at once: their buckets are found
    against every boundary read at once, not by a look-up per id; a bucket emptied loses its
    boundary."""
    with private_redis_server(tmp_path / "redis", appendonly=False) as server:
        admin = redis.asyncio.Redis.from_url(server.url, decode_responses=True)
        store = RedisStore(server.url, prefix="removals")
        try:
            await store.open()
            rng = random.Random(7)
            ids = new_ids(rng, 6000)
            for start in range(0, len(ids), 1000):
                await store.add([task(task_id) for task_id in ids[start : start + 1000]])
            boundaries: list[Any] = await admin.zrange(store.keys.id_index, 0, -1)
            emptied = boundaries[1]
            members: list[Any] = await admin.zrange(store.keys.id_bucket(emptied), 0, -1)
            gone = set(members)
            gone |= set(rng.sample(sorted(set(ids) - gone), 150))
            await admin.config_resetstat()
            assert sorted(await store.remove(list(gone))) == sorted(gone)
            stats = await admin.info("commandstats")
            assert "cmdstat_zrevrangebylex" not in stats
            assert await admin.zrange(store.keys.id_index, 0, -1) == [b for b in boundaries if b != emptied]
            assert await paged(store, 1000) == sorted(set(ids) - gone)
        finally:
            await store.close()
            await admin.aclose()


async def paged(store: RedisStore, limit: int) -> list[str]:
    seen: list[str] = []
    cursor: str | None = None
    while True:
        page, cursor = await store.list(cursor=cursor, limit=limit)
        seen += [t.id for t in page]
        if cursor is None:
            return seen


async def test_single_adds_wait_in_the_recent_list_listed_in_order_until_the_100th_merges_them(
    store: RedisStore,
) -> None:
    client = redis.asyncio.Redis.from_url(usable_redis_url())
    try:
        rng = random.Random(6)
        ids = new_ids(rng, 1000)
        await store.add([task(task_id) for task_id in ids])  # a batch of 100 or more: into the buckets
        assert not await client.exists(store.keys.recent_ids)
        singles = new_ids(rng, 99)
        for task_id in singles:
            await store.add([task(task_id)])
        assert await client.llen(store.keys.recent_ids) == 99
        gone = singles[:5] + ids[:5]
        assert sorted(await store.remove(gone)) == sorted(gone)
        expected = sorted(set(ids + singles) - set(gone))
        for limit in (7, 100):  # pages that end among recent ids and among the buckets' ones
            assert await paged(store, limit) == expected

        await store.add([task(singles[0])])  # the 100th: all move into the buckets, removed ones left out
        assert not await client.exists(store.keys.recent_ids)
        later = new_ids(rng, 3)
        for task_id in later:
            await store.add([task(task_id)])
        await store.remove([later[0]])
        await store.add([task(later[0])])  # removed and added again: in the list twice
        assert await client.llen(store.keys.recent_ids) == 4
        expected = sorted({*expected, singles[0], *later})
        for limit in (7, 100):
            assert await paged(store, limit) == expected
        buckets: list[Any] = await client.zrange(store.keys.id_index, 0, -1)
        in_buckets: list[str] = []
        for bound in buckets:
            members: list[Any] = await client.zrange(store.keys.id_bucket(bound.decode()), 0, -1)
            in_buckets += [member.decode() for member in members]
        assert sorted(in_buckets) == sorted(set(expected) - set(later))
    finally:
        await client.aclose()


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


async def test_an_id_left_in_the_recent_list_and_added_again_in_a_big_batch_is_indexed_once(
    store: RedisStore,
) -> None:
    # "m" waits in the list, is removed (its id stays there) and comes back in a batch of 100 that
    # goes to the buckets directly; when the list is merged, a split of the bucket must not put it
    # in two buckets (listed twice, and a ghost in one after its removal)
    await store.add([task("m")])
    assert await store.remove(["m"]) == ["m"]
    batch = [f"a{i:03}" for i in range(33)] + ["m"] + [f"z{i:03}" for i in range(66)]
    await store.add([task(task_id) for task_id in batch])
    singles = [f"b{i:03}" for i in range(33)] + [f"y{i:03}" for i in range(66)]
    for task_id in singles:
        await store.add([task(task_id)])

    expected = sorted(batch + singles)
    for limit in (7, 1000):
        assert await paged(store, limit) == expected
    assert await store.remove(["m"]) == ["m"]
    assert await paged(store, 1000) == [task_id for task_id in expected if task_id != "m"]


def separator(before: bytes, first: bytes) -> bytes:
    """The boundary a split gives the bucket that starts at ``first`` after ``before``: the shortest
    start of ``first`` that sorts after ``before``, not cut inside a UTF-8 character."""
    k = 0
    while k < len(before) and before[k] == first[k]:
        k += 1
    k += 1
    while k < len(first) and 0x80 <= first[k] < 0xC0:
        k += 1
    return first[:k]


async def buckets(client: redis.asyncio.Redis, store: RedisStore) -> list[tuple[bytes, list[bytes]]]:
    """Every bucket of the id index in order: its boundary and its ids."""
    bounds: list[Any] = await client.zrange(store.keys.id_index, 0, -1)
    base = store.keys.base.encode()
    index: list[tuple[bytes, list[bytes]]] = []
    for bound in bounds:
        members: list[Any] = await client.zrange(base + b"ids:" + bound, 0, -1)
        index.append((bound, members))
    return index


def unicode_ids(rng: random.Random, n: int) -> list[str]:
    """Ids that share starts and differ in characters of 1 to 4 UTF-8 bytes, some a start of another."""
    chars = ["a", "b", "é", "ê", "ÿ", "Ā", "日", "本", "😀", "😁"]
    ids = {"".join(rng.choice(chars) for _ in range(rng.randint(1, 6))) for _ in range(n)}
    return sorted(ids)


@pytest.mark.parametrize("family", ["hex", "unicode"])
async def test_splits_keep_buckets_of_64_listpacks_behind_the_shortest_boundaries(
    store: RedisStore, family: str
) -> None:
    rng = random.Random(8)
    ids = new_ids(rng, 3000) if family == "hex" else unicode_ids(rng, 3000)
    rng.shuffle(ids)
    await store.add([task(task_id) for task_id in ids[: len(ids) // 2]])  # batches of 1,000
    for start in range(len(ids) // 2, len(ids), 10):
        await store.add([task(task_id) for task_id in ids[start : start + 10]])
    for task_id in new_ids(rng, 100):  # single adds: the list merged into the buckets
        ids.append(task_id)
        await store.add([task(task_id)])

    client = redis.asyncio.Redis.from_url(usable_redis_url())
    try:
        index = await buckets(client, store)
        assert index[0][0] == b""
        assert len(index) > len(ids) / 64
        for (_, previous), (bound, members) in itertools.pairwise(index):
            assert 0 < len(members) <= 64
            assert bound == separator(previous[-1], members[0])
            bound.decode()  # whole characters
            assert await client.object("encoding", store.keys.base.encode() + b"ids:" + bound) == b"listpack"
        firsts = sum(len(members[0]) for _, members in index[1:])
        assert sum(len(bound) for bound, _ in index) < firsts  # not whole ids
    finally:
        await client.aclose()
    expected = sorted(ids)  # a str's order is its UTF-8 bytes'
    for limit in (7, 100):
        assert await paged(store, limit) == expected
    first_bucket_after_one = index[1][1]
    gone = [member.decode() for member in first_bucket_after_one]
    assert sorted(await store.remove(gone)) == sorted(gone)
    assert await paged(store, 100) == [task_id for task_id in expected if task_id not in set(gone)]


async def test_buckets_of_up_to_120_an_older_backbeat_wrote_are_paged_and_split_when_they_grow(
    store: RedisStore,
) -> None:
    rng = random.Random(9)
    ids = sorted(new_ids(rng, 1100))
    await store.add([task(task_id) for task_id in ids])
    client = redis.asyncio.Redis.from_url(usable_redis_url())
    try:
        # the index as the previous code left it: buckets of up to 120 behind whole-id boundaries
        base = store.keys.base.encode()
        await client.delete(
            store.keys.id_index, *(base + b"ids:" + bound for bound, _ in await buckets(client, store))
        )
        old: list[list[str]] = []
        start = 0
        while start < len(ids):
            size = 120 if len(old) % 2 == 0 else 100
            old.append(ids[start : start + size])
            start += size
        for number, members in enumerate(old):
            bound = "" if number == 0 else members[0]
            await client.zadd(store.keys.id_index, {bound: 0})
            await client.zadd(store.keys.id_bucket(bound), dict.fromkeys(members, 0))

        for limit in (7, 100):
            assert await paged(store, limit) == ids
        # one new id into the second bucket (100 ids) and one into the third (120), each through the
        # recent list's merge; the rest of the hundred go after the last old id
        into = [old[1][0] + "0", old[2][0] + "0"]
        later = [f"{'f' * 32}{i:03}" for i in range(98)]
        for task_id in [*into, *later]:
            await store.add([task(task_id)])
        assert not await client.exists(store.keys.recent_ids)
        index = dict(await buckets(client, store))
        for number in (1, 2):  # grown past 64: split, into pieces of at most 64
            grown = [
                bound
                for bound, members in index.items()
                if members and old[number][0] <= members[0].decode() <= old[number][-1]
            ]
            assert len(grown) >= 2
            assert all(len(index[bound]) <= 64 for bound in grown)
        assert len(index[old[4][0].encode()]) == 120  # untouched buckets stay as written
        emptied = old[4]
        assert sorted(await store.remove(emptied)) == sorted(emptied)
        assert old[4][0].encode() not in dict(await buckets(client, store))
    finally:
        await client.aclose()
    expected = sorted(set(ids + into + later) - set(emptied))
    for limit in (7, 100):
        assert await paged(store, limit) == expected


def edge_ids(rng: random.Random, n: int) -> set[str]:
    """Ids of 1 to 5 characters from an alphabet of each UTF-8 length's first and last (0x01 and
    0x7F, U+0080 to U+07FF, U+0800 to U+FFFF, U+10000 to U+10FFFF): many are starts of others, and
    neighbours differ in any byte of a character."""
    chars = ["\x01", "0", "a", "\x7f", "\x80", "é", "\u07ff", "\u0800", "日", "\uffff", "\U00010000"]
    chars.append("\U0010ffff")
    return {"".join(rng.choice(chars) for _ in range(rng.randint(1, 5))) for _ in range(n)}


async def assert_index_partitions(
    client: redis.asyncio.Redis, store: RedisStore, stored: set[str], most: int = 64
) -> None:
    """Every bucket (none empty but the first) holds at most ``most`` ids, all from its boundary
    (whole characters) up to the next one; the buckets and the recent list hold each stored id once."""
    index = await buckets(client, store)
    assert index[0][0] == b""
    bounds = [bound for bound, _ in index[1:]]
    for (bound, members), following in zip(index, [*bounds, None], strict=True):
        bound.decode()
        assert members or bound == b""
        assert len(members) <= most
        assert all(bound <= member and (following is None or member < following) for member in members)
    indexed = [member.decode() for _, members in index for member in members]
    recent: list[Any] = await client.lrange(store.keys.recent_ids, 0, -1)
    assert len(indexed) == len(set(indexed))
    assert set(indexed) <= stored <= set(indexed) | {task_id.decode() for task_id in recent}


async def test_buckets_partition_ids_of_every_utf8_length_through_splits_and_removals(
    store: RedisStore,
) -> None:
    rng = random.Random(10)
    stored: set[str] = set()
    client = redis.asyncio.Redis.from_url(usable_redis_url())
    try:
        for size in [3000, 150, 1, 1, 30, 400, 1, 150, 30, 1] * 3:
            fresh = sorted(edge_ids(rng, size) - stored)
            await store.add([task(task_id) for task_id in fresh])
            stored.update(fresh)
            ordered = sorted(stored)
            at = rng.randrange(len(ordered))
            gone = {*ordered[at : at + rng.choice([5, 70, 150])], *rng.sample(ordered, min(len(ordered), 20))}
            assert sorted(await store.remove(gone)) == sorted(gone)  # a run of neighbours empties buckets
            stored -= gone
            await assert_index_partitions(client, store, stored)
            assert await paged(store, rng.choice([7, 64, 100])) == sorted(stored)
    finally:
        await client.aclose()


current_source = scripts.source


def older_source(name: str) -> str:
    """A script as the code before session 13 had it: buckets of up to 120 behind whole ids."""
    text = current_source(name)
    older = text.replace("local BUCKET = 64", "local BUCKET = 120")
    older = older.replace("last and separator(last, id) or id", "id")
    return older.replace("separator(ids[first - 1], ids[first])", "ids[first]")


async def test_an_older_process_beside_this_one_leaves_every_id_in_one_bucket_in_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A rolling upgrade: a process splitting at 120 behind whole ids and this one add to and
    remove from one store by turns; each reads and splits the other's buckets."""
    assert "local BUCKET = 120" in older_source("add")
    assert older_source("add").count("separator(") == 1  # its definition, called nowhere
    prefix = f"test-{uuid.uuid4().hex[:12]}"
    monkeypatch.setattr(scripts, "source", older_source)
    older = RedisStore(usable_redis_url(), prefix=prefix)
    await older.open()
    monkeypatch.undo()
    newer = RedisStore(usable_redis_url(), prefix=prefix)
    await newer.open()
    client = redis.asyncio.Redis.from_url(usable_redis_url())
    rng = random.Random(11)
    stored: set[str] = set()
    sizes: set[int] = set()
    bounds = older_splits = 0
    try:
        for turn in range(24):
            writer = older if turn % 2 else newer
            start = rng.choice(sorted(stored))[:1] if stored else ""  # a burst into a few buckets
            for size, near in [(150, ""), (1, ""), (30, ""), (250, start), *[(1, "")] * rng.randint(0, 99)]:
                fresh = sorted({near + task_id for task_id in edge_ids(rng, size)} - stored)
                await writer.add([task(task_id) for task_id in fresh])
                stored.update(fresh)
            gone = set(rng.sample(sorted(stored), 30))
            assert sorted(await writer.remove(gone)) == sorted(gone)
            stored -= gone
            await assert_index_partitions(client, newer, stored, most=120)
            index = await buckets(client, newer)
            sizes.update(len(members) for _, members in index)
            older_splits += writer is older and len(index) > bounds
            bounds = len(index)
            assert await paged(writer, rng.choice([7, 100])) == sorted(stored)
        assert max(sizes) > 64 and older_splits  # each process grew and split the other's buckets
    finally:
        await older.close()
        await newer.close()
        await client.aclose()
        await delete_keys(usable_redis_url(), prefix)
