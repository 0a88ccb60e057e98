"""Adds on PostgreSQL: new tasks in one autocommitted statement, single adds on a connection the
store keeps, which a lost connection, concurrent adds and a close do not break."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from backbeat.errors import StoreClosedError, StoreUnavailableError, TaskExistsError
from backbeat.model.records import TaskFilter
from backbeat.stores.postgresql import PostgreSQLStore, queries
from backbeat.stores.postgresql import store as pg_store
from tests.adds import task
from tests.postgresql_server import usable_postgres_url

pytestmark = pytest.mark.postgresql


@pytest.fixture
async def url() -> AsyncIterator[str]:
    base, prefix = usable_postgres_url(), f"adds_{uuid.uuid4().hex[:10]}"
    yield f"{base}?prefix={prefix}"
    conn = await asyncpg.connect(base)
    try:
        await conn.execute(
            f"DROP TABLE IF EXISTS {', '.join(f'{prefix}_{t}' for t in queries.TABLES)} CASCADE"
        )
    finally:
        await conn.close()


async def backends(store: PostgreSQLStore) -> list[int]:
    """The server processes of this store's connections (its own and the admin's excluded)."""
    conn = await asyncpg.connect(usable_postgres_url())
    try:
        rows = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE query LIKE $1 AND pid <> pg_backend_pid()",
            f"%{store.prefix}_tasks%",
        )
        return [row["pid"] for row in rows]
    finally:
        await conn.close()


async def test_an_add_after_its_kept_connection_was_lost_takes_a_new_one(url: str) -> None:
    store = PostgreSQLStore(url)
    try:
        await store.add([task("a")])
        await store.add([task("b")])  # on the connection the store keeps for adds
        conn = await asyncpg.connect(usable_postgres_url())
        try:
            for pid in await backends(store):
                await conn.fetch("SELECT pg_terminate_backend($1)", pid)
        finally:
            await conn.close()
        # a new connection if the loss was seen; else sent on the lost one, and this add alone fails
        with contextlib.suppress(StoreUnavailableError):
            await store.add([task("c")])
        await store.add([task("d")])
        assert {"a", "b", "d"} <= {t.id for t in (await store.list())[0]}
    finally:
        await store.close()


async def test_single_adds_at_once_each_get_their_own_outcome(url: str) -> None:
    store = PostgreSQLStore(url)
    try:
        await store.add([task("taken")])
        ids = [f"t{i}" for i in range(30)] + ["taken"]
        results = await asyncio.gather(*(store.add([task(i, "red")]) for i in ids), return_exceptions=True)
        assert results[:-1] == [None] * 30
        assert isinstance(results[-1], TaskExistsError) and results[-1].task_ids == ["taken"]
        assert len((await store.list(TaskFilter(tag="red")))[0]) == 30
    finally:
        await store.close()


async def test_a_batch_with_a_taken_id_names_it_and_writes_nothing(url: str) -> None:
    store = PostgreSQLStore(url)
    try:
        await store.add([task("taken")])
        with pytest.raises(TaskExistsError) as raised:
            await store.add([task("x", "red"), task("taken"), task("y")])
        assert raised.value.task_ids == ["taken"]
        assert [t.id for t in (await store.list())[0]] == ["taken"]
        assert (await store.list(TaskFilter(tag="red")))[0] == []
    finally:
        await store.close()


@pytest.mark.parametrize("max_size", [2, 10], ids=["small-pool", "pool"])
async def test_a_store_closed_after_adds_opens_again_and_keeps_adding(url: str, max_size: int) -> None:
    store = PostgreSQLStore(url, max_size=max_size)
    try:
        for round_ in range(2):
            await store.add([task(f"a{round_}")])
            await store.add([task(f"b{round_}")])
            await store.close()
        await store.add([task("c")])
        assert sorted(t.id for t in (await store.list())[0]) == ["a0", "a1", "b0", "b1", "c"]
    finally:
        await store.close()


async def test_close_lets_the_adds_in_flight_end_first(url: str) -> None:
    store = PostgreSQLStore(url)
    await store.add([task("warm")])
    adds = [asyncio.ensure_future(store.add([task(f"t{i}")])) for i in range(20)]
    await asyncio.sleep(0)  # each waiting for a connection, or for its statement
    await store.close()
    assert all(add.done() for add in adds)
    await asyncio.gather(*adds)  # not "pool is closing", nor a connection's state lost under it
    store = PostgreSQLStore(url)
    try:
        assert all([await store.get(f"t{i}") is not None for i in range(20)])
    finally:
        await store.close()


async def test_an_add_left_in_flight_after_the_closes_bound_fails_as_closed(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pg_store, "CLOSE_TIMEOUT", 0.1)
    store = PostgreSQLStore(url)
    await store.add([task("warm")])
    admin = await asyncpg.connect(usable_postgres_url())
    try:
        async with admin.transaction():
            # the add's row locked by another transaction: the add waits for it
            await admin.execute(f"LOCK TABLE {store.prefix}_tasks IN EXCLUSIVE MODE")
            add = asyncio.ensure_future(store.add([task("late")]))
            await asyncio.sleep(0.2)
            assert not add.done()
            closing = asyncio.ensure_future(store.close())
            await asyncio.sleep(0)  # waiting for the add
            with pytest.raises(StoreClosedError, match="closing when this call began"):
                await store.add([task("during")])  # not on a pool of its own
            await closing
        with pytest.raises(StoreClosedError, match="closed with this call in flight"):
            await add
    finally:
        await admin.close()
