"""The Redis store's connection pool: a caller waits for a free connection only when none is."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio
from redis.asyncio.connection import AbstractConnection

from backbeat.errors import StoreUnavailableError
from backbeat.stores.redis import RedisStore
from backbeat.stores.redis import connection as redis_connection
from backbeat.stores.redis.pool import PoolTimeoutError, WaitingConnectionPool
from tests.integration.test_redis_store import task
from tests.redis_server import delete_keys, usable_redis_url

pytestmark = pytest.mark.redis


@pytest.fixture
async def pool() -> AsyncIterator[WaitingConnectionPool]:
    made = WaitingConnectionPool.from_url(usable_redis_url(), max_connections=2, timeout=5.0)
    yield made
    await made.aclose()


async def test_a_caller_finding_every_connection_in_use_waits_for_one_released(
    pool: WaitingConnectionPool,
) -> None:
    first, second = await pool.get_connection(), await pool.get_connection()
    waiting = [asyncio.ensure_future(pool.get_connection()) for _ in range(2)]
    await asyncio.sleep(0.05)
    assert not any(w.done() for w in waiting)  # (the plain pool raised "Too many connections")

    await pool.release(first)
    await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
    [taken] = [w for w in waiting if w.done()]
    assert taken.result() is first
    await pool.release(second)
    assert await asyncio.wait_for(asyncio.gather(*waiting), 5) == [first, second]
    for connection in (first, second):
        await pool.release(connection)
    assert len(pool._in_use_connections) == 0


async def test_a_caller_waits_no_longer_than_the_pools_timeout(pool: WaitingConnectionPool) -> None:
    pool.timeout = 0.1
    held = [await pool.get_connection(), await pool.get_connection()]

    with pytest.raises(
        PoolTimeoutError,
        match=r"no connection of the pool's 2 \(max_connections, connection_pool_size\) "
        r"was released within 0\.1 s",
    ):
        await pool.get_connection()
    for connection in held:
        await pool.release(connection)
    await pool.release(await pool.get_connection())  # the pool still serves


async def test_a_connection_released_by_a_cancelled_release_still_reaches_a_waiter(
    pool: WaitingConnectionPool,
) -> None:
    held = [await pool.get_connection(), await pool.get_connection()]
    waiting = asyncio.ensure_future(pool.get_connection())
    await asyncio.sleep(0.05)
    async with pool._lock:  # contended: the release waits for the pool's lock
        releasing = asyncio.ensure_future(pool.release(held[0]))
        await asyncio.sleep(0.05)
        releasing.cancel()  # redis-py ends a release cancelled there in the background
        with pytest.raises(asyncio.CancelledError):
            await releasing

    assert await asyncio.wait_for(waiting, 5) is held[0]
    await pool.release(held[0])
    await pool.release(held[1])


@pytest.fixture
async def starved_store(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[RedisStore]:
    """An open store whose pool's only connection is held (by the test), its calls bounded by 1 s."""
    monkeypatch.setattr(redis_connection, "CALL_TIMEOUT", 1.0)
    url, prefix = usable_redis_url(), f"test-{uuid.uuid4().hex[:12]}"
    store = RedisStore(url, prefix=prefix, max_connections=1)
    await store.open()
    client = store._conn.client
    assert isinstance(client, redis.asyncio.Redis)
    pool = client.connection_pool
    assert isinstance(pool, WaitingConnectionPool)
    held = await pool.get_connection()
    yield store
    await pool.release(held)
    await store.close()
    await delete_keys(url, prefix)


async def test_a_store_call_finding_its_pool_starved_says_so(starved_store: RedisStore) -> None:
    # the pool waits half the call's bound: before, both were the same and the call's ended
    # first, so the caller read "did not answer within 10 s" of a server that was never asked
    with pytest.raises(
        StoreUnavailableError,
        match=r"the client's pool had no free connection: no connection of the pool's 1 "
        r"\(max_connections, connection_pool_size\) was released within 0\.5 s",
    ):
        await starved_store.get("a")


async def test_a_users_plain_pool_found_starved_is_reported_as_full_not_as_unavailable() -> None:
    # redis-py's plain pool fails at once with "Too many connections" (MaxConnectionsError, a
    # ConnectionError): the server was never asked, as with our pool's PoolTimeoutError
    url, prefix = usable_redis_url(), f"test-{uuid.uuid4().hex[:12]}"
    pool = redis.asyncio.ConnectionPool.from_url(url, max_connections=1)
    client = redis.asyncio.Redis(connection_pool=pool)
    store = RedisStore(prefix=prefix, client=client)
    await store.open()
    held = await pool.get_connection()  # type: ignore[no-untyped-call]
    try:
        full = r"the client's pool had no free connection: Too many connections"
        with pytest.raises(StoreUnavailableError, match=full):
            await store.get("a")
        with pytest.raises(StoreUnavailableError, match=r"the client's pool had no free connection"):
            await store.add([task("a")])
    finally:
        await pool.release(held)
        await store.close()
        await client.aclose()
        await delete_keys(url, prefix)


class CountingPool(WaitingConnectionPool):
    """The pool, counting the connections asked of it."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.asked = 0

    async def get_connection(self, *args: Any, **kwargs: Any) -> AbstractConnection:
        self.asked += 1
        return await super().get_connection(*args, **kwargs)


async def test_an_add_finding_its_pool_starved_does_not_ask_it_again() -> None:
    # a pool's timeout is no failed connection: before, the add's borrowed connection was asked
    # for once more as after a failed handshake, waiting the pool's timeout twice
    url, prefix = usable_redis_url(), f"test-{uuid.uuid4().hex[:12]}"
    pool = CountingPool.from_url(url, max_connections=1, timeout=0.2)
    client = redis.asyncio.Redis(connection_pool=pool)
    store = RedisStore(prefix=prefix, client=client)
    await store.open()
    held = await pool.get_connection()
    try:
        pool.asked = 0
        with pytest.raises(StoreUnavailableError, match=r"the client's pool had no free connection"):
            await store.add([task("a")])
        assert pool.asked == 1
    finally:
        await pool.release(held)
        await store.close()
        await client.aclose()  # a client given its pool leaves the pool's connections open
        await pool.aclose()
        await delete_keys(url, prefix)
