"""backbeat beside arq, SAQ and APScheduler 3.11 on one Redis: the producer and the worker side.

Every system gets the same private ``redis-server`` (emptied between systems), the same
no-op job with one short argument, and the same counts. Figures per system: single awaited
adds/s (backbeat before and after ``start()``; a peer has one mode), adds/s with 100
producers at once, fires/s (due jobs run to completion by one worker process), Redis
``used_memory`` per pending job, and the Redis server's CPU (user + sys) per fire.
Workers run up to 1,000 jobs at once (backbeat's default ``max_concurrency``), but SAQ's
50: each of its slots holds a pooled connection (redis-py's pool defaults to 100), and with
1,000 its worker stalled after ~170 jobs here (10 to 100 slots all fire ~1,700/s).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import redis.asyncio

from backbeat import BackgroundTaskScheduler, SchedulerConfig
from backbeat.api.config import RedisJobStoreConfig
from bench import aps, targets

SINGLE_BEFORE = "single awaited adds/s, before start()"
SINGLE_AFTER = "single awaited adds/s, after start()"
COALESCED = "adds/s, 100 producers at once"
FIRES = "fires/s"
MEMORY = "Redis memory per pending job, B"
CPU = "Redis server CPU per fire, µs"
FIGURES = (SINGLE_BEFORE, SINGLE_AFTER, COALESCED, FIRES, MEMORY, CPU)
LOWER_IS_BETTER = frozenset({MEMORY, CPU})
PRODUCERS = 100
CONCURRENCY = 1000
SAQ_CONCURRENCY = 50
ARG = "A-1"
FAR = datetime(2100, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Counts:
    jobs: int
    """Jobs per adds/s and fires/s figure."""
    pending: int
    """Jobs stored for the memory figure."""
    aps_pending: int
    """APScheduler's share of ``pending`` (its adds are synchronous and slow)."""


async def _count(order_id: str) -> None:
    targets.FIRED += 1  # the counter targets' waiter reads


async def backbeat_job(order_id: str) -> None:
    """backbeat's job (stored by reference, so a module-level function)."""
    await _count(order_id)


async def arq_job(ctx: dict[str, Any], order_id: str) -> None:
    await _count(order_id)


async def saq_job(ctx: Any, *, order_id: str) -> None:
    await _count(order_id)


def aps_job(order_id: str) -> None:
    targets.FIRED += 1


# -- the server ------------------------------------------------------------------------------


class Server:
    """The measured Redis: emptied between systems, read for ``used_memory`` and CPU time."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.client = redis.asyncio.from_url(url)

    async def flush(self) -> None:
        await self.client.flushdb()

    async def used_memory(self) -> int:
        info = await self.client.info("memory")
        return int(info["used_memory"])

    async def cpu(self) -> float:
        info = await self.client.info("cpu")
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])

    async def close(self) -> None:
        await self.client.aclose()


async def _single(add: Callable[[], Awaitable[object]], n: int) -> float:
    started = targets._clock()
    for _ in range(n):
        await add()
    return n / (time.perf_counter() - started)


async def _concurrent(add: Callable[[], Awaitable[object]], n: int) -> float:
    async def producer(count: int) -> None:
        for _ in range(count):
            await add()

    each = n // PRODUCERS
    started = targets._clock()
    await asyncio.gather(*(producer(each) for _ in range(PRODUCERS)))
    return each * PRODUCERS / (time.perf_counter() - started)


async def _memory(server: Server, add: Callable[[], Awaitable[object]], n: int) -> float:
    """Bytes of ``used_memory`` per job for ``n`` pending jobs added (100 producers at once)."""
    await server.flush()
    before = await server.used_memory()
    await _concurrent(add, n)
    return (await server.used_memory() - before) / (n // PRODUCERS * PRODUCERS)


async def _fires(server: Server, n: int, start: Callable[[], Awaitable[object]]) -> dict[str, float]:
    """Fires/s and server CPU per fire of ``n`` due jobs stored, from ``start()`` until all ran."""
    targets.FIRED = 0
    cpu = await server.cpu()
    started = targets._clock()
    await start()
    await targets._until_fired(n)
    elapsed = time.perf_counter() - started
    return {FIRES: n / elapsed, CPU: (await server.cpu() - cpu) / n * 1e6}


# -- the systems -----------------------------------------------------------------------------


async def backbeat_figures(server: Server, counts: Counts) -> dict[str, float]:
    spec = RedisJobStoreConfig(host=server.url, lock_prefix=f"bench-{uuid.uuid4().hex[:8]}")
    figures: dict[str, float] = {}
    producer = BackgroundTaskScheduler(store=spec, config=SchedulerConfig(producer_only=True))

    async def add(scheduler: BackgroundTaskScheduler = producer) -> object:
        return await scheduler.add_task(backbeat_job, "date", run_date=FAR, args=[ARG])

    await server.flush()
    figures[SINGLE_BEFORE] = await _single(add, counts.jobs)
    await server.flush()
    figures[COALESCED] = await _concurrent(add, counts.jobs)
    figures[MEMORY] = await _memory(server, add, counts.pending)
    await server.flush()
    await producer.shutdown()

    started = BackgroundTaskScheduler(store=spec)  # a worker: its engine claims while adds arrive
    await started.start()
    figures[SINGLE_AFTER] = await _single(lambda: add(started), counts.jobs)
    await started.shutdown()

    await server.flush()
    producer = BackgroundTaskScheduler(store=spec, config=SchedulerConfig(producer_only=True))
    due = datetime.now(UTC) - timedelta(seconds=1)
    for offset in range(0, counts.jobs, 1000):
        batch = min(1000, counts.jobs - offset)
        await producer.add_tasks(
            [{"func": backbeat_job, "trigger": "date", "run_date": due, "args": [ARG]}] * batch
        )
    await producer.shutdown()
    worker = BackgroundTaskScheduler(store=spec)
    figures |= await _fires(server, counts.jobs, worker.start)
    await worker.shutdown()
    await server.flush()
    return figures


async def arq_figures(server: Server, counts: Counts) -> dict[str, float]:
    from arq import create_pool
    from arq.connections import RedisSettings
    from arq.worker import Worker

    pool = await create_pool(RedisSettings.from_dsn(server.url))
    figures: dict[str, float] = {}

    async def pending() -> object:
        return await pool.enqueue_job("arq_job", ARG, _defer_until=FAR)

    await server.flush()
    figures[SINGLE_BEFORE] = figures[SINGLE_AFTER] = await _single(pending, counts.jobs)
    await server.flush()
    figures[COALESCED] = await _concurrent(pending, counts.jobs)
    figures[MEMORY] = await _memory(server, pending, counts.pending)
    await server.flush()
    await _concurrent(lambda: pool.enqueue_job("arq_job", ARG), counts.jobs)
    worker = Worker(
        functions=[arq_job],
        redis_pool=pool,
        handle_signals=False,
        max_jobs=CONCURRENCY,
        keep_result=0,
    )
    running: list[asyncio.Task[Any]] = []

    async def start() -> None:
        running.append(asyncio.create_task(worker.main()))

    figures |= await _fires(server, counts.jobs, start)
    # arq 0.25's close gathers its job tasks, and one it cancelled raises CancelledError out of it
    with contextlib.suppress(asyncio.CancelledError):
        await worker.close()
    running[0].cancel()
    await asyncio.gather(*running, return_exceptions=True)
    await pool.aclose()
    await server.flush()
    return figures


async def saq_figures(server: Server, counts: Counts) -> dict[str, float]:
    from saq import Queue, Worker

    queue = Queue.from_url(server.url, name="bench")
    await queue.connect()
    far = int(FAR.timestamp())
    figures: dict[str, float] = {}

    async def pending() -> object:
        return await queue.enqueue("saq_job", order_id=ARG, scheduled=far)

    await server.flush()
    figures[SINGLE_BEFORE] = figures[SINGLE_AFTER] = await _single(pending, counts.jobs)
    await server.flush()
    figures[COALESCED] = await _concurrent(pending, counts.jobs)
    figures[MEMORY] = await _memory(server, pending, counts.pending)
    await server.flush()
    await _concurrent(lambda: queue.enqueue("saq_job", order_id=ARG), counts.jobs)
    worker = Worker(queue, functions=[saq_job], concurrency=SAQ_CONCURRENCY)
    running: list[asyncio.Task[Any]] = []

    async def start() -> None:
        running.append(asyncio.create_task(worker.start()))

    figures |= await _fires(server, counts.jobs, start)
    await worker.stop()
    await asyncio.gather(*running, return_exceptions=True)
    await queue.disconnect()
    await server.flush()
    return figures


async def apscheduler_figures(server: Server, counts: Counts) -> dict[str, float]:
    """APScheduler's adds are synchronous calls of a scheduler started paused (before
    ``start()`` it only keeps them in memory): one figure for both rows, none for 100 producers."""
    await server.flush()
    scheduler = aps.scheduler("redis", server.url)
    scheduler.start(paused=True)
    started = targets._clock()
    for _ in range(counts.jobs):
        scheduler.add_job(aps_job, "date", run_date=FAR, args=[ARG])
    single = counts.jobs / (time.perf_counter() - started)
    scheduler.remove_all_jobs()
    await server.flush()
    before = await server.used_memory()
    for _ in range(counts.aps_pending):
        scheduler.add_job(aps_job, "date", run_date=FAR, args=[ARG])
    memory = (await server.used_memory() - before) / counts.aps_pending
    scheduler.remove_all_jobs()
    now = datetime.now(UTC)
    for _ in range(counts.jobs):
        scheduler.add_job(aps_job, "date", run_date=now, args=[ARG], misfire_grace_time=None)

    async def start() -> None:
        scheduler.resume()

    fires = await _fires(server, counts.jobs, start)
    aps.drop(scheduler)
    await server.flush()
    return {SINGLE_BEFORE: single, SINGLE_AFTER: single, MEMORY: memory, **fires}


SYSTEMS: dict[str, Callable[[Server, Counts], Awaitable[dict[str, float]]]] = {
    "backbeat": backbeat_figures,
    "arq 0.25": arq_figures,
    "SAQ 0.26": saq_figures,
    aps.SYSTEM: apscheduler_figures,
}
