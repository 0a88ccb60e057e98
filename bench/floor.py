"""The floor of a Python producer on Redis: ``python -m bench.floor [--n N] [--producers P]
[--raw] [--store URL]``.

What the cheapest producer reaches on this machine: each add is one ``HSET`` of a 200-byte
JSON record and one ``ZADD`` of its due time, with no checks, no duplicate-id refusal, no
indexes and no wake-up. Single awaited adds send each add as one pipeline; ``--producers``
loops at once (100 by default) share one pipeline per event-loop tick, each waiting for its
own future, as backbeat's coalescer does. The pipeline is redis-py's (with hiredis), or with
``--raw`` the commands packed by hand, written to an ``asyncio`` transport and their replies
parsed by a ``hiredis.Reader``: no Python client can spend less. Backbeat's figures are read
against these: they bound what an absolute target can ask of any scheduler on the same
machine. Prints adds/s and this process's and the server's CPU time per add, on a private
``redis-server`` unless ``--store`` names one.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid

import hiredis
import orjson
import redis.asyncio

from bench.redis_server import private_redis
from bench.stores import redis_server_cpu

DOC = orjson.dumps(
    {
        "func": "bench.peers:backbeat_job",
        "trigger": {"type": "date", "run_date": "2100-01-01T00:00:00+00:00"},
        "args": ["x" * 16],
        "created_at": "2026-12-07T10:00:00.000000+00:00",
        "misfire_grace_time": 30,
        "max_instances": 1,
    }
)
FAR = 4102444800.0  # 2100-01-01


class _Coalescing:
    """Adds made in one event-loop tick, handed to :meth:`_flush` together; each caller waits
    for its own future."""

    def __init__(self) -> None:
        self._pending: list[tuple[asyncio.Future[None], str]] = []

    def add(self, task_id: str) -> asyncio.Future[None]:
        future = asyncio.get_running_loop().create_future()
        if not self._pending:
            asyncio.get_running_loop().call_soon(self._flush)
        self._pending.append((future, task_id))
        return future

    def _flush(self) -> None:
        raise NotImplementedError


class _Batcher(_Coalescing):
    """A tick's adds sent as one redis-py pipeline."""

    def __init__(self, client: redis.asyncio.Redis, prefix: str) -> None:
        super().__init__()
        self._client, self._tasks, self._due = client, f"{{{prefix}}}:tasks", f"{{{prefix}}}:due"
        self._sends: set[asyncio.Task[None]] = set()

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        send = asyncio.ensure_future(self._send(batch))
        self._sends.add(send)
        send.add_done_callback(self._sends.discard)

    async def _send(self, batch: list[tuple[asyncio.Future[None], str]]) -> None:
        pipe = self._client.pipeline(transaction=False)
        for _, task_id in batch:
            pipe.hset(self._tasks, task_id, DOC)
            pipe.zadd(self._due, {task_id: FAR})
        await pipe.execute()
        _answer(batch)


class _RawBatcher(_Coalescing, asyncio.Protocol):
    """:class:`_Batcher` on a connection of its own: commands packed by hand, replies parsed
    by a ``hiredis.Reader``, no client library between."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self._hset = b"*4\r\n$4\r\nHSET\r\n" + _bulk(f"{{{prefix}}}:tasks".encode())
        self._zadd = b"*4\r\n$4\r\nZADD\r\n" + _bulk(f"{{{prefix}}}:due".encode()) + _bulk(b"%d" % FAR)
        self._doc = _bulk(DOC)
        self._reader = hiredis.Reader()
        self._waiting: list[tuple[asyncio.Future[None], int]] = []
        """Each sent batch's future and the replies it waits for, in sending order."""
        self._transport: asyncio.Transport | None = None

    async def connect(self, url: str) -> None:
        address = redis.asyncio.Redis.from_url(url).connection_pool.connection_kwargs
        await asyncio.get_running_loop().create_connection(lambda: self, address["host"], address["port"])

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        parts: list[bytes] = []
        for _, task_id in batch:
            key = _bulk(task_id.encode())
            parts += (self._hset, key, self._doc, self._zadd, key)
        assert self._transport is not None
        self._transport.write(b"".join(parts))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.add_done_callback(lambda _: _answer(batch))
        self._waiting.append((done, 2 * len(batch)))

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        while (reply := self._reader.gets()) is not False:
            if isinstance(reply, hiredis.ReplyError):
                raise reply
            done, left = self._waiting[0]
            if left == 1:
                self._waiting.pop(0)
                done.set_result(None)
            else:
                self._waiting[0] = (done, left - 1)


def _answer(batch: list[tuple[asyncio.Future[None], str]]) -> None:
    for future, _ in batch:
        future.set_result(None)


def _bulk(value: bytes) -> bytes:
    return b"$%d\r\n%b\r\n" % (len(value), value)


async def floor(url: str, n: int, producers: int, raw: bool = False) -> tuple[float, float, float]:
    """Adds/s, and this process's and the server's CPU seconds per add, of ``n`` bare adds."""
    prefix = f"bench-floor-{uuid.uuid4().hex[:8]}"
    client = redis.asyncio.Redis.from_url(url)
    batcher: _Batcher | _RawBatcher = _Batcher(client, prefix)
    if raw:
        batcher = _RawBatcher(prefix)
        await batcher.connect(url)
    counter = iter(range(10**12))

    async def single(count: int) -> None:
        for _ in range(count):
            pipe = client.pipeline(transaction=False)
            task_id = f"t{next(counter)}"
            pipe.hset(f"{{{prefix}}}:tasks", task_id, DOC)
            pipe.zadd(f"{{{prefix}}}:due", {task_id: FAR})
            await pipe.execute()

    async def coalesced(count: int) -> None:
        for _ in range(count):
            await batcher.add(f"t{next(counter)}")

    loop = single if producers == 1 and not raw else coalesced
    await loop(200)  # warm up: the connections open
    server = await redis_server_cpu(url)
    began, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(loop(n // producers) for _ in range(producers)))
    elapsed, cpu = time.perf_counter() - began, time.process_time() - cpu
    server = await redis_server_cpu(url) - server
    done = n // producers * producers
    async for key in client.scan_iter(match=f"{{{prefix}}}:*"):
        await client.delete(key)
    await client.aclose()
    return done / elapsed, cpu / done, server / done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--producers", type=int, default=100, help="1 for single awaited adds")
    parser.add_argument("--raw", action="store_true", help="commands packed by hand, no redis-py")
    parser.add_argument("--store", help="a Redis URL (default: a private redis-server)")
    args = parser.parse_args()

    def report(url: str) -> None:
        rate, cpu, server = asyncio.run(floor(url, args.n, args.producers, args.raw))
        print(
            f"bare adds{' (raw)' if args.raw else ''}, {args.producers} producer(s): {rate:,.0f}/s, "
            f"client {cpu * 1e6:.1f} µs and server {server * 1e6:.1f} µs CPU per add"
        )

    if args.store:
        report(args.store)
    else:
        with private_redis() as url:
            report(url)


if __name__ == "__main__":
    main()
