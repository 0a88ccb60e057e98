"""A Redis store closed with adds in flight, and a Redis store used from one event loop after
another: the adds in flight end within the close's bound or fail as closed, nothing connects after
the close, and a store moves to a new loop by starting afresh there."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import traceback
import warnings
from collections.abc import AsyncIterator, Coroutine, Sequence
from typing import Any

import pytest
import redis

from backbeat import BackgroundTaskScheduler
from backbeat.api import routing
from backbeat.api.coalescing import AddCoalescer
from backbeat.errors import StoreClosedError
from backbeat.stores.redis import RedisStore, connection
from backbeat.stores.redis.keys import Keys
from tests.adds import task
from tests.redis_server import RedisServerHandle

pytestmark = pytest.mark.redis


def store_clients(admin: redis.Redis) -> int:
    """The server's connections other than ``admin``'s."""
    return len(admin.client_list()) - 1


def continue_later(server: RedisServerHandle, delay: float) -> None:
    """Continue the paused ``server`` after ``delay`` seconds, from the running loop."""
    assert server.process is not None
    asyncio.get_running_loop().call_later(delay, server.process.send_signal, signal.SIGCONT)


async def started(adds: Sequence[asyncio.Future[Any]]) -> None:
    """Let ``adds`` send their calls (and wait for the replies)."""
    for _ in range(5):
        await asyncio.sleep(0)
    assert not any(add.done() for add in adds)


@contextlib.asynccontextmanager
async def adds_in_flight(
    store: RedisStore, server: RedisServerHandle, count: int
) -> AsyncIterator[list[asyncio.Task[None]]]:
    """``count`` adds of ``store`` (``t0``, ``t1``, ...) sent to the paused ``server`` and waiting
    for its replies, after an add of ``warm`` that opened the store; the server continues on
    leaving the block (if ``continue_later`` did not continue it before)."""
    await store.add([task("warm")])
    with server.paused():
        adds = [asyncio.ensure_future(store.add([task(f"t{i}")])) for i in range(count)]
        await started(adds)
        yield adds


async def test_close_waits_for_the_adds_in_flight_and_leaves_no_connection(
    server: RedisServerHandle, admin: redis.Redis
) -> None:
    store = RedisStore(server.url, prefix="close")
    # two pipelined on the store's own connection, three on connections of the pool
    async with adds_in_flight(store, server, 5) as adds:
        continue_later(server, 0.2)
        await store.close()
        assert all(add.done() for add in adds)  # ended before close() returned
    await asyncio.gather(*adds)
    assert store_clients(admin) == 0  # none connected again after the pool closed
    assert admin.hlen(Keys("close").tasks) == 6


async def test_adds_left_in_flight_after_the_bound_fail_as_closed_and_nothing_connects_again(
    server: RedisServerHandle, admin: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(connection, "CLOSE_TIMEOUT", 0.2)
    store = RedisStore(server.url, prefix="close")
    async with adds_in_flight(store, server, 5) as adds:
        await store.close()
        outcomes = await asyncio.gather(*adds, return_exceptions=True)
    assert all(isinstance(outcome, StoreClosedError) for outcome in outcomes), outcomes
    assert "was closed with this add in flight" in str(outcomes[0])
    await asyncio.sleep(0.1)  # (a connection made after the close would be seen by now)
    assert store_clients(admin) == 0


async def test_an_add_made_while_the_store_closes_fails_as_closed(
    server: RedisServerHandle, admin: redis.Redis
) -> None:
    store = RedisStore(server.url, prefix="close")
    async with adds_in_flight(store, server, 1) as [first]:
        continue_later(server, 0.2)
        closing = asyncio.ensure_future(store.close())
        await asyncio.sleep(0)
        with pytest.raises(StoreClosedError):
            await store.add([task("late")])
        await closing
    await first
    assert store_clients(admin) == 0
    assert not admin.hexists(Keys("close").tasks, "late")


async def noop(label: str) -> None:
    """The job of the facade's adds (never run: the producer runs nothing)."""


def coalesced_adds(producer: BackgroundTaskScheduler, count: int) -> list[asyncio.Future[str]]:
    adds: list[Coroutine[Any, Any, str]] = [
        producer.schedule_delayed_task(f"t{i}", noop, delay_minutes=5, args=["x"]) for i in range(count)
    ]
    return [asyncio.ensure_future(add) for add in adds]


async def test_a_shutdown_stores_the_coalesced_adds_in_flight_and_waiting_first(
    server: RedisServerHandle, admin: redis.Redis
) -> None:
    producer = BackgroundTaskScheduler(store=f"{server.url}?prefix=close", role="producer")
    await producer.schedule_delayed_task("warm", noop, delay_minutes=5, args=["x"])
    with server.paused():
        adds = coalesced_adds(producer, 50)  # a lone add, then batches behind it
        await started(adds)
        continue_later(server, 0.2)
        await producer.shutdown()
        assert all(add.done() for add in adds)
    assert len(set(await asyncio.gather(*adds))) == 50
    assert store_clients(admin) == 0
    assert admin.hlen(Keys("close").tasks) == 51


async def test_a_shutdown_fails_the_coalesced_adds_left_after_its_bound_as_closed(
    server: RedisServerHandle, admin: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(connection, "CLOSE_TIMEOUT", 0.2)
    monkeypatch.setattr(routing, "CLOSE_TIMEOUT", 0.2)
    producer = BackgroundTaskScheduler(store=f"{server.url}?prefix=close", role="producer")
    await producer.schedule_delayed_task("warm", noop, delay_minutes=5, args=["x"])
    with server.paused():
        adds = coalesced_adds(producer, 50)
        await started(adds)
        await producer.shutdown()
        outcomes = await asyncio.gather(*adds, return_exceptions=True)
    assert all(isinstance(outcome, StoreClosedError) for outcome in outcomes), outcomes
    await asyncio.sleep(0.1)
    assert store_clients(admin) == 0


async def test_each_add_refused_while_a_shutdown_closes_the_store_has_a_traceback_of_its_own(
    server: RedisServerHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(connection, "CLOSE_TIMEOUT", 0.2)
    monkeypatch.setattr(routing, "CLOSE_TIMEOUT", 0.2)
    producer = BackgroundTaskScheduler(store=f"{server.url}?prefix=close", role="producer")
    await producer.schedule_delayed_task("warm", noop, delay_minutes=5, args=["x"])
    refused: list[StoreClosedError] = []
    with server.paused():
        adds = coalesced_adds(producer, 1)
        await started(adds)
        shutdown = asyncio.ensure_future(producer.shutdown())
        await asyncio.sleep(0)
        for i in range(3):
            with pytest.raises(StoreClosedError) as caught:
                await producer.schedule_delayed_task(f"late{i}", noop, delay_minutes=5, args=["x"])
            refused.append(caught.value)
        await shutdown
        await asyncio.gather(*adds, return_exceptions=True)
    assert [adds_raised_through(error) for error in refused] == [1, 1, 1]


def adds_raised_through(error: BaseException) -> int:
    """How many frames of ``AddCoalescer.add`` ``error``'s traceback holds."""
    return sum(
        frame.f_code is AddCoalescer.add.__code__ for frame, _ in traceback.walk_tb(error.__traceback__)
    )


def test_a_store_used_on_one_loop_then_another_starts_afresh_on_the_second(
    server: RedisServerHandle, admin: redis.Redis
) -> None:
    store = RedisStore(server.url, prefix="loops")

    async def first() -> None:
        await store.open()
        await store.add([task("a")])
        await store.add([task("b")])  # on the store's own connection

    async def second() -> tuple[list[str], bool]:
        await asyncio.gather(store.add([task("c")]), store.add([task("d")]))  # pipelined
        try:
            return sorted(await store.existing(["a", "b", "c", "d"])), await store.get("a") is not None
        finally:
            await store.close()

    asyncio.run(first())
    assert asyncio.run(second()) == (["a", "b", "c", "d"], True)  # not "Event loop is closed"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)  # the first loop's sockets, dropped
        gc.collect()
    assert store_clients(admin) == 0


async def cancel_a_close_with_an_add_in_flight(
    store: RedisStore, server: RedisServerHandle, task_id: str
) -> None:
    """Cancel ``store.close()`` while an add of ``task_id`` waits for the paused server; that add
    ends once the server answers again."""
    with server.paused():
        first = asyncio.ensure_future(store.add([task(task_id)]))
        await started([first])
        closing = asyncio.ensure_future(store.close())
        await asyncio.sleep(0.05)  # waiting for the add
        closing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await closing
    await first


async def test_a_store_whose_close_was_cancelled_adds_again(
    server: RedisServerHandle, admin: redis.Redis
) -> None:
    store = RedisStore(server.url, prefix="close")
    await store.add([task("warm")])
    try:
        await cancel_a_close_with_an_add_in_flight(store, server, "first")
        await store.add([task("after")])  # opens the store again: not StoreClosedError
        assert admin.hexists(Keys("close").tasks, "after")
    finally:
        await store.close()


@pytest.mark.usefixtures("ended_loops")
@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_a_store_whose_close_was_cancelled_on_one_loop_adds_on_the_next(
    server: RedisServerHandle, admin: redis.Redis
) -> None:
    store = RedisStore(server.url, prefix="close")

    async def cancelled_close() -> None:
        await store.add([task("warm")])
        await cancel_a_close_with_an_add_in_flight(store, server, "first")

    async def next_loop() -> None:
        try:
            await store.add([task("after")])  # not "attached to a different loop"
        finally:
            await store.close()

    asyncio.run(cancelled_close())
    asyncio.run(next_loop())
    assert admin.hexists(Keys("close").tasks, "after")


async def test_a_cancelled_close_gives_the_held_connection_back_once_its_add_ends(
    server: RedisServerHandle, admin: redis.Redis
) -> None:
    store = RedisStore(server.url, prefix="close", max_connections=4)
    await store.add([task("warm")])
    try:
        for turn in range(4):  # a pool of 4: a connection kept each time would fill it
            await cancel_a_close_with_an_add_in_flight(store, server, f"first{turn}")
            await store.add([task(f"after{turn}")])
            assert store_clients(admin) == 1  # the one held connection, given back and held again
    finally:
        await store.close()


@pytest.mark.usefixtures("replica")
async def test_acknowledged_adds_in_flight_end_before_close_returns_and_nothing_connects_after(
    server: RedisServerHandle, admin: redis.Redis
) -> None:
    others = store_clients(admin)  # the replica's
    store = RedisStore(server.url, prefix="close", durability="replica")
    async with adds_in_flight(store, server, 3) as adds:
        continue_later(server, 0.2)
        await store.close()
        assert all(add.done() for add in adds)  # ended before close() returned
    await asyncio.gather(*adds)
    assert store_clients(admin) == others  # none connected again after the client closed
    assert admin.hlen(Keys("close").tasks) == 4
    try:
        await store.add([task("after")])  # opens the store again: not StoreClosedError
    finally:
        await store.close()
    assert admin.hexists(Keys("close").tasks, "after")


@pytest.mark.usefixtures("replica")
async def test_acknowledged_adds_left_after_the_bound_fail_as_closed(
    server: RedisServerHandle, admin: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(connection, "CLOSE_TIMEOUT", 0.2)
    others = store_clients(admin)
    store = RedisStore(server.url, prefix="close", durability="replica")
    async with adds_in_flight(store, server, 3) as adds:
        closing = asyncio.ensure_future(store.close())
        await asyncio.sleep(0)
        with pytest.raises(StoreClosedError):
            await store.add([task("late")])  # made while the store closes
        await closing
        outcomes = await asyncio.gather(*adds, return_exceptions=True)
    assert all(isinstance(outcome, StoreClosedError) for outcome in outcomes), outcomes
    await asyncio.sleep(0.1)
    assert store_clients(admin) == others
    assert not admin.hexists(Keys("close").tasks, "late")
