"""Single adds on Redis: one ``EVALSHA`` each on the store's own connection, which survives a
flushed script cache, a connection the server closed, and a server that went away."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from datetime import timedelta
from typing import Any

import pytest
import redis
import redis.asyncio
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import BusyLoadingError, InvalidResponse, OutOfMemoryError, ReadOnlyError
from redis.utils import HIREDIS_AVAILABLE

from backbeat import BackgroundTaskScheduler
from backbeat.errors import StoreError, StoreUnavailableError, TaskExistsError
from backbeat.stores.redis import RedisStore, connection
from backbeat.stores.redis.direct import DirectScript
from backbeat.stores.redis.keys import Keys
from tests.adds import T0, task
from tests.redis_proxy import ReplyDroppingProxy, reply_dropping_proxies
from tests.redis_server import RedisServerHandle

pytestmark = pytest.mark.redis


@pytest.fixture
async def store(server: RedisServerHandle) -> AsyncIterator[RedisStore]:
    store = RedisStore(server.url, prefix="adds")
    await store.open()
    yield store
    await store.close()


@contextlib.asynccontextmanager
async def holding_store(url: str) -> AsyncIterator[RedisStore]:
    """A store at ``url`` that has added "a" and "b", so that its next add goes on the
    connection it holds for adds (the first one took it from the pool); closed after."""
    store = RedisStore(url, prefix="adds")
    try:
        await store.add([task("a")])
        await store.add([task("b")])
        yield store
    finally:
        await store.close()


def evalsha_calls(admin: redis.Redis) -> int:
    stats = admin.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


async def test_a_single_add_is_one_script_call(store: RedisStore, admin: redis.Redis) -> None:
    await store.add([task("warm")])
    admin.config_resetstat()
    for i in range(20):
        await store.add([task(f"t{i}")])
    assert evalsha_calls(admin) == 20
    stats = admin.info("commandstats")  # the scripts' own commands are counted too, not these
    assert not {"cmdstat_ping", "cmdstat_eval", "cmdstat_script|load", "cmdstat_multi"} & set(stats)
    assert len(await store.existing([f"t{i}" for i in range(20)])) == 20


async def test_an_add_after_the_script_cache_was_flushed_loads_it_again(
    store: RedisStore, admin: redis.Redis
) -> None:
    await store.add([task("a")])
    admin.script_flush()
    await store.add([task("b")])
    await store.add([task("c")])
    assert sorted(await store.existing(["a", "b", "c"])) == ["a", "b", "c"]
    with pytest.raises(TaskExistsError):
        await store.add([task("b")])


async def test_an_add_on_a_connection_the_server_closed_is_sent_on_a_new_one(
    store: RedisStore, admin: redis.Redis
) -> None:
    await store.add([task("a")])
    assert admin.client_kill_filter(_type="normal", skipme=True) >= 1
    await store.add([task("b")])  # neither an error nor "b exists" (it was sent once)
    assert sorted(await store.existing(["a", "b"])) == ["a", "b"]


async def test_an_add_after_the_server_closed_the_idle_connection_is_sent_on_a_new_one_at_once(
    store: RedisStore, admin: redis.Redis
) -> None:
    await store.add([task("a")])
    await store.add([task("b")])  # the held connection's replies read by the store's own reader
    assert admin.client_kill_filter(_type="normal", skipme=True) >= 1
    await asyncio.sleep(0.2)  # the end of the connection is read while no add waits
    began = time.monotonic()
    await store.add([task("c")])
    assert time.monotonic() - began < 1  # not the call's timeout
    await store.add([task("d")])
    assert sorted(await store.existing(list("abcd"))) == list("abcd")


async def test_adds_fail_as_unavailable_while_the_server_is_down_and_work_again_after(
    server: RedisServerHandle, store: RedisStore
) -> None:
    await store.add([task("a")])
    server.kill()
    with pytest.raises(StoreUnavailableError):
        await store.add([task("b")])
    server.restart()
    for _ in range(50):
        try:
            await store.add([task("c")])
            break
        except StoreUnavailableError:
            await asyncio.sleep(0.1)
    assert await store.existing(["c"]) == ["c"]


async def test_concurrent_adds_go_through_the_pool_while_one_holds_the_connection(
    store: RedisStore,
) -> None:
    ids = [f"t{i}" for i in range(50)]
    await asyncio.gather(*(store.add([task(task_id)]) for task_id in ids))
    assert sorted(await store.existing(ids)) == sorted(ids)


def connected_clients(admin: redis.Redis) -> int:
    return len(admin.client_list())


async def test_two_concurrent_adds_are_pipelined_on_the_stores_own_connection(
    store: RedisStore, admin: redis.Redis
) -> None:
    await store.add([task("warm")])  # the store's own connection is open
    before = connected_clients(admin)
    await asyncio.gather(store.add([task("a")]), store.add([task("b")]))
    assert connected_clients(admin) == before  # the second was not sent on a connection of the pool
    assert sorted(await store.existing(["a", "b"])) == ["a", "b"]


async def test_pipelined_adds_whose_connection_was_dropped_are_each_reported_added(
    proxy: ReplyDroppingProxy,
) -> None:
    async with holding_store(proxy.url) as store:
        proxy.to_drop = 1  # the pipeline's replies, and the connection, lost after both ran
        await asyncio.gather(store.add([task("c")]), store.add([task("d")]))  # not TaskExistsError
        assert proxy.dropped == 1
        assert sorted(await store.existing(["a", "b", "c", "d"])) == ["a", "b", "c", "d"]


@pytest.mark.parametrize("in_flight", ["c", "cd"], ids=["one add", "two pipelined adds"])
async def test_adds_to_a_server_that_stopped_answering_each_fail_as_unavailable_and_the_next_one_works(
    server: RedisServerHandle, monkeypatch: pytest.MonkeyPatch, in_flight: str
) -> None:
    monkeypatch.setattr(connection, "CALL_TIMEOUT", 0.3)
    async with holding_store(server.url) as store:
        with server.paused():  # it accepts and reads, never answers
            outcomes = await asyncio.gather(
                *(store.add([task(i)]) for i in in_flight), return_exceptions=True
            )
        for outcome in outcomes:
            assert isinstance(outcome, StoreUnavailableError), outcomes
            assert "did not answer within 0.3 s" in str(outcome)
        await store.add([task("e")])
        assert {"a", "b", "e"} <= set(await store.existing(["a", "b", "c", "d", "e"]))


@pytest.mark.parametrize("pipelined", [True, False], ids=["pipelined behind it", "sent after it"])
async def test_a_cancelled_add_leaves_the_store_adding(server: RedisServerHandle, pipelined: bool) -> None:
    async with holding_store(server.url) as store:
        with server.paused():
            cancelled = asyncio.ensure_future(store.add([task("c")]))
            behind = asyncio.ensure_future(store.add([task("d")])) if pipelined else None
            for _ in range(3):  # sent at their first steps, then waiting for their replies
                await asyncio.sleep(0)
            cancelled.cancel()
            with pytest.raises(asyncio.CancelledError):
                await cancelled
        if behind is not None:
            await behind  # its connection dropped with the cancelled call's: sent again
        else:
            await store.add([task("d")])
        assert {"a", "b", "d"} <= set(await store.existing(["a", "b", "c", "d"]))


@pytest.mark.usefixtures("ended_loops")
@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_an_add_on_a_new_event_loop_is_not_pipelined_behind_a_call_left_on_an_ended_one(
    server: RedisServerHandle,
) -> None:
    store = RedisStore(server.url, prefix="adds")
    ended = asyncio.new_event_loop()
    ended.run_until_complete(store.add([task("a")]))
    ended.run_until_complete(store.add([task("b")]))  # on the store's own connection
    with server.paused():
        left = ended.create_task(store.add([task("c")]))
        ended.run_until_complete(asyncio.sleep(0.05))  # sent, waiting for its reply
        assert not left.done()
    ended.close()  # with that call in flight: its waiter can no longer be answered

    async def add_after() -> list[str]:
        await store.add([task("d")])  # not RuntimeError (the ended loop's waiter failed)
        return await store.existing(["d"])

    # (not closed: its pool's first connections were made on the ended loop, which cannot close them)
    assert asyncio.run(add_after()) == ["d"]


async def test_the_held_connection_goes_back_to_a_given_clients_pool(server: RedisServerHandle) -> None:
    client = redis.asyncio.Redis.from_url(server.url, max_connections=4)
    store = RedisStore(prefix="adds", client=client)
    try:
        await store.add([task("a")])
        await store.add([task("b")])
        await store.close()
        # every connection of the pool is free again: four calls at once each get one
        assert await asyncio.gather(*(client.blpop(["nothing"], timeout=0.1) for _ in range(4))) == [None] * 4
    finally:
        await store.close()
        await client.aclose()


@pytest.mark.skipif(not HIREDIS_AVAILABLE, reason="the held connection's replies are read by hiredis")
async def test_held_adds_are_read_without_redis_pys_reader(
    store: RedisStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    await store.add([task("a")])  # the connection is checked out (and its handshake read) here
    reads: list[object] = []
    read_response = AbstractConnection.read_response

    async def counted(self: AbstractConnection, *args: Any, **kwargs: Any) -> Any:
        reads.append(self)
        return await read_response(self, *args, **kwargs)

    monkeypatch.setattr(AbstractConnection, "read_response", counted)
    for i in range(5):
        await store.add([task(f"t{i}")])
    with pytest.raises(TaskExistsError):
        await store.add([task("t0")])
    assert reads == []
    assert len(await store.existing([f"t{i}" for i in range(5)])) == 5


async def test_held_adds_ping_when_the_clients_health_check_is_due(
    server: RedisServerHandle, admin: redis.Redis
) -> None:
    client = redis.asyncio.Redis.from_url(server.url, health_check_interval=1)
    store = RedisStore(prefix="adds", client=client)
    try:
        await store.add([task("a")])
        await store.add([task("b")])
        admin.config_resetstat()
        await store.add([task("c")])
        assert "cmdstat_ping" not in admin.info("commandstats")
        await asyncio.sleep(1.2)
        await store.add([task("d")])  # the check is due: PING first, then the add
        await store.add([task("e")])
        assert admin.info("commandstats")["cmdstat_ping"]["calls"] == 1
        assert sorted(await store.existing(list("abcde"))) == list("abcde")
    finally:
        await store.close()
        await client.aclose()


async def test_a_small_pool_is_not_held_from(server: RedisServerHandle) -> None:
    client = redis.asyncio.Redis.from_url(server.url, max_connections=1)
    store = RedisStore(prefix="adds", client=client)
    try:
        await store.add([task("a")])
        await store.add([task("b")])
        assert await store.get("a") is not None  # the one connection is not held by adds
    finally:
        await store.close()
        await client.aclose()


async def noop(label: str) -> None:
    """The job of the facade's adds (never run: the producer runs nothing)."""


async def test_concurrent_adds_to_a_server_that_stopped_answering_each_raise_and_later_ones_work(
    server: RedisServerHandle, admin: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(connection, "CALL_TIMEOUT", 0.3)
    producer = BackgroundTaskScheduler(store=f"{server.url}?prefix=adds", role="producer")

    def adds(label: str) -> list[Coroutine[Any, Any, str]]:
        return [
            producer.schedule_delayed_task(f"{label}{i}", noop, delay_minutes=5, args=[label])
            for i in range(20)
        ]

    try:
        assert len(set(await asyncio.gather(*adds("before")))) == 20
        with server.paused():
            failed = await asyncio.gather(*adds("during"), return_exceptions=True)
        assert all(isinstance(outcome, StoreUnavailableError) for outcome in failed), failed
        assert len(set(await asyncio.gather(*adds("after")))) == 20
        names = {info.name for info in await producer.list_tasks()}
        assert {f"before{i}" for i in range(20)} | {f"after{i}" for i in range(20)} <= names
    finally:
        await producer.shutdown()


async def test_a_script_error_on_the_adds_connection_is_a_store_error(
    store: RedisStore, admin: redis.Redis
) -> None:
    await store.add([task("a")])
    admin.delete(store.keys.tasks)
    admin.set(store.keys.tasks, "not a hash")
    with pytest.raises(StoreError) as raised:
        await store.add([task("b")])
    assert not isinstance(raised.value, StoreUnavailableError)
    admin.delete(store.keys.tasks)
    await store.add([task("c")])  # the connection is still usable (the tasks hash begins anew)


@pytest.fixture
async def proxy(server: RedisServerHandle) -> AsyncIterator[ReplyDroppingProxy]:
    async with reply_dropping_proxies([server.port]) as proxies:
        yield proxies[server.port]


def nothing_else(admin: redis.Redis) -> None:
    """Only the reply was lost."""


def script_cache_emptied(admin: redis.Redis) -> None:
    """The server restarted after running the add: the resend meets NoScriptError, and the add
    sent once more must still be told it is a resend."""
    admin.script_flush()


def memory_full(admin: redis.Redis) -> None:
    """The server reached ``maxmemory`` (``noeviction``, the default) before the resend, which
    only reads (it finds its own write), so it must not fail for memory."""
    admin.config_set("maxmemory", 1)


@pytest.mark.parametrize(
    "meanwhile", [nothing_else, script_cache_emptied, memory_full], ids=lambda meanwhile: meanwhile.__name__
)
async def test_an_add_whose_reply_was_lost_after_it_ran_is_reported_added(
    proxy: ReplyDroppingProxy, admin: redis.Redis, meanwhile: Callable[[redis.Redis], None]
) -> None:
    async with holding_store(proxy.url) as store:
        proxy.to_drop, proxy.on_drop = 1, lambda: meanwhile(admin)
        try:
            await store.add([task("c")])  # not TaskExistsError: the resend finds its own write
        finally:
            admin.config_set("maxmemory", 0)
        assert proxy.dropped == 1
        assert sorted(await store.existing(["a", "b", "c"])) == ["a", "b", "c"]
        assert await store.get("c") == task("c")


async def test_adds_on_the_pools_connections_whose_replies_were_lost_are_reported_added(
    proxy: ReplyDroppingProxy,
) -> None:
    store = RedisStore(proxy.url, prefix="adds")
    try:
        await store.add([task("warm")])
        proxy.to_drop = 3
        ids = [f"t{i}" for i in range(3)]  # one on the store's own connection, two on the pool's
        await asyncio.gather(*(store.add([task(task_id)]) for task_id in ids))
        assert proxy.dropped == 3
        assert sorted(await store.existing(ids)) == ids
    finally:
        await store.close()


async def test_an_add_of_a_taken_id_whose_reply_was_lost_still_fails(proxy: ReplyDroppingProxy) -> None:
    store = RedisStore(proxy.url, prefix="adds")
    try:
        await store.add([task("a")])
        other = task("a")
        other.created_at = T0.replace(microsecond=1)  # another add of the same id: another document
        proxy.to_drop = 1
        with pytest.raises(TaskExistsError) as raised:
            await store.add([other])
        assert raised.value.task_ids == ["a"]
        assert proxy.dropped == 1
        assert await store.get("a") == task("a")
    finally:
        await store.close()


async def test_a_batch_resent_after_a_dead_connection_is_not_reported_added_without_its_new_ids(
    store: RedisStore, admin: redis.Redis
) -> None:
    await store.add([task("a")])
    # the server closed the held connection (idle timeout, failover): the next sending never ran
    assert admin.client_kill_filter(_type="normal", skipme=True) >= 1
    with pytest.raises(TaskExistsError) as raised:
        await store.add([task("a"), task("b")])  # "a" is taken: nothing may be written
    assert raised.value.task_ids == ["a"]
    assert await store.existing(["a", "b"]) == ["a"]


async def test_an_add_from_a_small_pool_whose_reply_was_lost_is_reported_added(
    proxy: ReplyDroppingProxy,
) -> None:
    client = redis.asyncio.Redis.from_url(proxy.url, max_connections=1)  # adds hold no connection
    store = RedisStore(prefix="adds", client=client)
    try:
        await store.add([task("a")])
        proxy.to_drop = 1
        await store.add([task("b")])  # sent once more as a resend, not by the client's retry
        assert proxy.dropped == 1
        assert await store.get("b") == task("b")
    finally:
        await store.close()
        await client.aclose()


async def test_an_acknowledged_add_whose_reply_was_lost_is_reported_added(
    replica: RedisServerHandle, proxy: ReplyDroppingProxy
) -> None:
    store = RedisStore(proxy.url, prefix="adds", durability="replica")
    try:
        await store.add([task("a")])
        proxy.to_drop = 1
        await store.add([task("b")])  # the script and its WAIT sent again, the script as a resend
        assert proxy.dropped == 1
        assert await store.get("b") == task("b")
        other = task("a")
        other.created_at = T0.replace(microsecond=1)
        proxy.to_drop = 1
        with pytest.raises(TaskExistsError):
            await store.add([other])
        assert proxy.dropped == 2
    finally:
        await store.close()


async def answer_every_script_with(reply: bytes, calls: list[bytes]) -> asyncio.Server:
    """A stand-in for a Redis server that answers ``EVALSHA`` with ``reply`` (RESP, counted in
    ``calls``), ``HELLO`` with the protocol asked for and any other command with ``+OK``."""
    return await answer_scripts_with([reply], calls)


async def answer_scripts_with(replies: list[bytes], calls: list[bytes]) -> asyncio.Server:
    """:func:`answer_every_script_with`, the n-th ``EVALSHA`` answered with ``replies[n]`` (the
    last of them once they run out); ``calls`` has each one's script arguments, space-separated."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while header := await reader.readline():
                parts = []
                for _ in range(int(header[1:])):
                    size = int((await reader.readline())[1:])
                    parts.append((await reader.readexactly(size + 2))[:-2])
                if parts[0].upper() == b"EVALSHA":
                    writer.write(replies[min(len(calls), len(replies) - 1)])
                    calls.append(b" ".join(parts[5:]))
                elif parts[0].upper() == b"HELLO":
                    writer.write(b"%%1\r\n$5\r\nproto\r\n:%s\r\n" % parts[1])
                else:
                    writer.write(b"+OK\r\n")
                await writer.drain()
        finally:
            writer.close()

    return await asyncio.start_server(serve, "127.0.0.1", 0)


@pytest.mark.skipif(not HIREDIS_AVAILABLE, reason="the held connection's replies are read by hiredis")
async def test_a_loading_server_on_the_held_connection_raises_as_redis_py_does() -> None:
    # LOADING (a restarted server reading its data) is an error reply redis-py raises as a
    # ConnectionError: the held connection's reader must raise it too, never return it as a reply
    calls: list[bytes] = []
    server = await answer_every_script_with(b"-LOADING Redis is loading the dataset in memory\r\n", calls)
    port = server.sockets[0].getsockname()[1]
    client = redis.asyncio.Redis(host="127.0.0.1", port=port)
    script = DirectScript(client, "0" * 40, "k", "b", timeout=5)
    try:
        for _ in range(3):  # redis-py's path first (the connection is new), then the held one's
            with pytest.raises(BusyLoadingError):
                await script(["0", "x"], asyncio.get_running_loop())
        assert len(calls) == 6  # each sent again once, as after a lost connection
    finally:
        await script.close(grace=1)
        await client.aclose()
        server.close()


@pytest.mark.skipif(not HIREDIS_AVAILABLE, reason="the held connection's replies are read by hiredis")
async def test_a_call_pipelined_behind_a_garbled_reply_is_sent_again_as_a_resend() -> None:
    # a reply that cannot be parsed is the error of its own call; the call pipelined behind it
    # lost its reply with the connection (its script may have run): sent again, told so
    calls: list[bytes] = []
    ok = b"*1\r\n$1\r\nx\r\n"
    server = await answer_scripts_with([ok, b"?garbled\r\n", ok], calls)
    port = server.sockets[0].getsockname()[1]
    client = redis.asyncio.Redis(host="127.0.0.1", port=port)
    script = DirectScript(client, "0" * 40, "k", "b", timeout=5, resend=connection.add_resent)
    try:
        assert await script(["0", "w"], asyncio.get_running_loop()) == [b"x"]
        adds = script(["0", "a"], asyncio.get_running_loop()), script(["0", "b"], asyncio.get_running_loop())
        outcomes = await asyncio.gather(*adds, return_exceptions=True)
        garbled, behind = list(outcomes)
        assert isinstance(garbled, InvalidResponse), garbled
        assert behind == [b"x"]
        assert calls == [b"0 w", b"0 a", b"0 b", b"r b"]
    finally:
        await script.close(grace=1)
        await client.aclose()
        server.close()


@pytest.mark.skipif(not HIREDIS_AVAILABLE, reason="the held connection's replies are read by hiredis")
async def test_push_notifications_on_the_held_connection_are_not_taken_for_replies() -> None:
    # RESP3 (redis-py's default) lets a server push notifications between replies (key
    # invalidations, a managed server's maintenance notices): redis-py's reader skips them
    calls: list[bytes] = []
    push = b">2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n"
    server = await answer_every_script_with(push + b"*1\r\n$1\r\nx\r\n" + push, calls)
    port = server.sockets[0].getsockname()[1]
    client = redis.asyncio.Redis(host="127.0.0.1", port=port)
    script = DirectScript(client, "0" * 40, "k", "b", timeout=5)
    try:
        for _ in range(4):  # the push after a reply is read before the next call's
            assert await script(["0", "x"], asyncio.get_running_loop()) == [b"x"]
        assert len(calls) == 4
    finally:
        await script.close(grace=1)
        await client.aclose()
        server.close()


async def test_an_added_record_is_stored_as_sent_with_its_live_fields_at_their_defaults_empty(
    store: RedisStore, admin: redis.Redis
) -> None:
    plain, counted = task("plain", "a"), task("counted")
    counted.version, counted.running, counted.runs, counted.failures = 3, 1, 7, 2
    counted.last_run_at, counted.last_outcome = T0, "failed|twice"
    counted.options.max_instances, counted.paused = 4, True
    await store.add([plain, counted])
    raws = admin.hmget(store.keys.tasks, ["plain", "counted"])
    live = [raw.split(b"|", 9)[:9] for raw in raws if isinstance(raw, bytes)]
    t0 = str(int(T0.timestamp() * 1_000_000)).encode()
    assert live[0] == [t0, b"", b"", b"", b"", b"", b"", b"", b""]
    assert live[1] == [t0, b"3", b"1", b"7", b"2", t0, b"4", b"p", b"failed/twice"]
    assert await store.get("plain") == plain
    got = await store.get("counted")
    assert got is not None
    assert (got.version, got.running, got.runs, got.failures, got.last_run_at) == (3, 1, 7, 2, T0)
    assert (got.last_outcome, got.options.max_instances, got.paused) == ("failed/twice", 4, True)
    assert admin.zrange(store.keys.schedule, 0, -1) == [b"plain"]  # a paused task is not scheduled

    replacing = task("counted")
    await store.add([replacing], replace=True)  # keeps the live state, counts as a change
    got = await store.get("counted")
    assert got is not None
    assert (got.version, got.running, got.runs, got.failures, got.paused) == (4, 1, 7, 2, False)
    assert admin.zscore(store.keys.schedule, "counted") == float(t0)


def stored(admin: redis.Redis, prefix: str) -> dict[bytes, object]:
    """Every key under ``prefix`` (its name without the prefix) and its content."""
    content: dict[bytes, object] = {}
    for key in admin.scan_iter(match=f"{{{prefix}}}:*"):
        kind = admin.type(key)
        value: object
        if kind == b"hash":
            value = admin.hgetall(key)
        elif kind == b"zset":
            value = admin.zrange(key, 0, -1, withscores=True)
        elif kind == b"list":
            value = admin.lrange(key, 0, -1)
        else:
            value = admin.get(key)
        content[key.split(b":", 1)[1]] = value
    return content


async def test_lone_new_adds_take_the_short_path_and_store_what_batches_store(
    server: RedisServerHandle, admin: redis.Redis
) -> None:
    # add.lua writes a lone new untagged task before defining its helpers; the same tasks added
    # two at a time (the general path) must leave the same keys, the id index merged from the
    # list of recent ids at the same points (every 100 ids)
    tasks = []
    for i in range(230):
        one = task(f"t{i * 7919 % 1009}")  # ids in no order, across the index's buckets
        one.paused = i % 7 == 3
        one.orphaned = "gone" if i % 5 == 1 else None
        one.next_run_time = None if i % 11 == 4 else T0 + timedelta(seconds=i % 13)
        tasks.append(one)
    lone, pairs = RedisStore(server.url, prefix="lone"), RedisStore(server.url, prefix="pairs")
    await lone.open()
    await pairs.open()
    try:
        admin.config_resetstat()
        for one in tasks:
            await lone.add([one])
        stats = admin.info("commandstats")
        assert stats["cmdstat_hsetnx"]["calls"] == len(tasks)
        assert "cmdstat_hmget" in stats and stats["cmdstat_hmget"]["calls"] == 2  # the two merges only
        for first in range(0, len(tasks), 2):
            await pairs.add(tasks[first : first + 2])
        assert stored(admin, "lone") == stored(admin, "pairs")
        assert set(stored(admin, "lone")) >= {b"tasks", b"schedule", b"orphaned", b"recent", b"idx"}
        assert await lone.get(tasks[5].id) == tasks[5] == await pairs.get(tasks[5].id)
    finally:
        await lone.close()
        await pairs.close()


@pytest.fixture
def full(admin: redis.Redis) -> Iterator[None]:
    """A server out of memory, as with ``maxmemory`` reached under ``noeviction``: a script's
    first write fails (OOM), its reads still run."""
    admin.config_set("maxmemory-policy", "noeviction")
    yield
    admin.config_set("maxmemory", 0)


async def test_a_lone_add_of_a_stored_id_is_refused_as_taken_on_a_server_out_of_memory(
    store: RedisStore, admin: redis.Redis, full: None
) -> None:
    # add.lua's short path must not write before it knows the id is new: a write refused for
    # memory would turn the add of a taken id into a StoreError instead of TaskExistsError
    await store.add([task("a")])
    admin.config_set("maxmemory", 1)
    with pytest.raises(TaskExistsError) as raised:
        await store.add([task("a")])
    assert raised.value.task_ids == ["a"]
    with pytest.raises(StoreError, match="maxmemory"):
        await store.add([task("b")])  # a new one cannot be written
    admin.config_set("maxmemory", 0)
    assert await store.existing(["a", "b"]) == ["a"]


@pytest.mark.parametrize(
    ("reply", "driver_error", "translated"),
    [
        (b"-ERR something went wrong\r\n", redis.exceptions.ResponseError, StoreError),
        (b"-READONLY You can't write against a read only replica.\r\n", ReadOnlyError, StoreError),
        (b"-OOM command not allowed when used memory > 'maxmemory'.\r\n", OutOfMemoryError, StoreError),
        (b"-LOADING Redis is loading the dataset in memory\r\n", BusyLoadingError, StoreUnavailableError),
    ],
)
@pytest.mark.parametrize("pool", [None, 2], ids=["held connection", "pool's connection"])
async def test_an_adds_driver_errors_are_translated_as_the_stores_other_calls_translate_them(
    reply: bytes, driver_error: type[Exception], translated: type[StoreError], pool: int | None
) -> None:
    # Connection.add translates the driver's errors in clauses of its own, not under errors():
    # the same error, as the same kind of StoreError, with the same message
    server = await answer_every_script_with(reply, [])
    url = f"redis://127.0.0.1:{server.sockets[0].getsockname()[1]}/0"
    options = {} if pool is None else {"max_connections": pool}
    conn = connection.Connection(url, Keys("adds"), None, options)
    try:
        with pytest.raises(StoreError) as raised:
            await conn.add("0", "x")
        cause = raised.value.__cause__
        assert isinstance(cause, driver_error), cause
        with pytest.raises(StoreError) as through_errors, conn.errors():
            raise cause
        assert type(raised.value) is type(through_errors.value) is translated
        assert str(raised.value) == str(through_errors.value)
        assert str(raised.value).startswith(f"Redis at {url} ")
    finally:
        await conn.close()
        server.close()
