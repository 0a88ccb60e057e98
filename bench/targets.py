"""Throughput: adds/s and fires/s of no-op async jobs, for APScheduler 3.11 and for backbeat."""

from __future__ import annotations

import asyncio
import gc
import time
from datetime import UTC, datetime, timedelta

from backbeat import BackgroundTaskScheduler
from bench import aps
from bench.stores import StoreTarget

FIRED = 0
FAR = datetime(2100, 1, 1, tzinfo=UTC)


async def noop() -> None:
    """The job: counts itself and does nothing else."""
    global FIRED
    FIRED += 1


async def _until_fired(n: int, timeout: float = 600) -> None:
    deadline = time.perf_counter() + timeout
    while n > FIRED:
        if time.perf_counter() > deadline:
            raise TimeoutError(f"only {FIRED} of {n} jobs fired within {timeout}s")
        await asyncio.sleep(0.001)


def _clock() -> float:
    gc.collect()
    return time.perf_counter()


async def apscheduler_figures(store: str, n: int, redis_url: str) -> dict[str, float]:
    """APScheduler 3.11 ``AsyncIOScheduler`` with its memory or Redis job store."""
    global FIRED
    scheduler = aps.scheduler(store, redis_url)
    scheduler.start(paused=True)
    started = _clock()
    for _ in range(n):
        scheduler.add_job(noop, "date", run_date=FAR)
    adds = n / (time.perf_counter() - started)
    scheduler.remove_all_jobs()
    now = datetime.now(UTC)
    for _ in range(n):
        scheduler.add_job(noop, "date", run_date=now, misfire_grace_time=None)
    FIRED = 0
    started = _clock()
    scheduler.resume()
    await _until_fired(n)
    fires = n / (time.perf_counter() - started)
    aps.drop(scheduler)
    return {"adds/s (single)": adds, "fires/s": fires}


async def _single_adds(producer: BackgroundTaskScheduler, n: int) -> float:
    """Sequential awaited adds per second (the tasks are cleared after)."""
    started = _clock()
    for _ in range(n):
        await producer.add_task(noop, "date", run_date=FAR)
    rate = n / (time.perf_counter() - started)
    await producer.clear_all_jobs()
    return rate


async def backbeat_producer_figures(target: StoreTarget, n: int) -> dict[str, float]:
    """backbeat on ``target`` from a producer never started (a web process's): single awaited
    adds, and 100 producers adding at once (coalesced into shared store calls)."""
    concurrency = 100
    producer = target.producer()
    await producer.clear_all_jobs()
    single = await _single_adds(producer, n)

    async def one_producer(count: int) -> None:
        for _ in range(count):
            await producer.add_task(noop, "date", run_date=FAR)

    started = _clock()
    await asyncio.gather(*(one_producer(n // concurrency) for _ in range(concurrency)))
    coalesced = (n // concurrency * concurrency) / (time.perf_counter() - started)
    await producer.clear_all_jobs()
    await producer.shutdown()
    return {"adds/s (not started)": single, "adds/s (100 at once)": coalesced}


async def backbeat_figures(target: StoreTarget, n: int, batch: int = 1000) -> dict[str, float]:
    """backbeat on ``target``: single adds, batch adds, fires (the producer started)."""
    global FIRED
    figures = await backbeat_producer_figures(target, n)
    producer = target.producer()
    await producer.start()
    await producer.clear_all_jobs()
    single = await _single_adds(producer, n)
    started = _clock()
    for offset in range(0, n, batch):
        await producer.add_tasks(
            [{"func": noop, "trigger": "date", "run_date": FAR} for _ in range(min(batch, n - offset))]
        )
    batched = n / (time.perf_counter() - started)
    await producer.clear_all_jobs()
    now = datetime.now(UTC) - timedelta(seconds=1)
    for offset in range(0, n, batch):
        await producer.add_tasks(
            [{"func": noop, "trigger": "date", "run_date": now} for _ in range(min(batch, n - offset))]
        )
    worker = target.worker(producer)
    FIRED = 0
    started = _clock()
    await worker.start()
    await _until_fired(n)
    fires = n / (time.perf_counter() - started)
    await worker.shutdown()
    await producer.clear_all_jobs()
    await producer.shutdown()
    return {**figures, "adds/s (single)": single, "adds/s (batch)": batched, "fires/s": fires}
