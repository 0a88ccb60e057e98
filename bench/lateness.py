"""Lateness at a steady 1,000 fires/s: one-shot tasks added ahead of time, fire times 1 ms apart.

Each job records ``time.time()`` minus the fire time it was scheduled for (backbeat: the run's
``current_run().fire_time``; APScheduler: the time passed as its argument).
"""

from __future__ import annotations

import asyncio
import sys
import time
from datetime import UTC, datetime
from typing import Any

from backbeat import current_run
from bench import aps
from bench.stores import StoreTarget
from bench.targets import FAR

LATE: list[float] = []
SPACING = 0.001
"""Seconds between two fire times: 1,000 fires/s."""


async def record_lateness() -> None:
    """The backbeat job."""
    LATE.append(time.time() - current_run().fire_time.timestamp())


async def record_aps_lateness(fire_time: float) -> None:
    """The APScheduler job."""
    LATE.append(time.time() - fire_time)


def _at(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)


async def _collect(n: int, first: float, margin: float) -> list[float]:
    """Wait for ``n`` records; warn when the first fire time had passed before the runs could start."""
    if margin < 0:
        print(f"warning: lateness run started {-margin:.2f}s after its first fire time", file=sys.stderr)
    deadline = first + n * SPACING + 60
    while len(LATE) < n:
        if time.time() > deadline:
            raise TimeoutError(f"only {len(LATE)} of {n} lateness jobs ran")
        await asyncio.sleep(0.05)
    return list(LATE)


async def backbeat_lateness(target: StoreTarget, n: int, batch: int = 1000) -> list[float]:
    producer = target.producer()
    await producer.start()
    await producer.clear_all_jobs()
    # How long n adds take here decides how far ahead the first fire time must be.
    probe = [{"func": record_lateness, "trigger": "date", "run_date": FAR}] * batch
    started = time.perf_counter()
    await producer.add_tasks(probe)
    add_time = (time.perf_counter() - started) * n / batch
    await producer.clear_all_jobs()
    first = time.time() + 1.0 + 2 * add_time
    for offset in range(0, n, batch):
        await producer.add_tasks(
            [
                {"func": record_lateness, "trigger": "date", "run_date": _at(first + i * SPACING)}
                for i in range(offset, min(n, offset + batch))
            ]
        )
    worker = target.worker(producer)
    LATE.clear()
    await worker.start()
    try:
        return await _collect(n, first, first - time.time())
    finally:
        await worker.shutdown()
        await producer.clear_all_jobs()
        await producer.shutdown()


async def apscheduler_lateness(store: str, n: int, redis_url: str) -> list[float]:
    scheduler: Any = aps.scheduler(store, redis_url)
    scheduler.start(paused=True)
    started = time.perf_counter()
    for _ in range(200):
        scheduler.add_job(record_aps_lateness, "date", run_date=FAR, args=[0.0])
    add_time = (time.perf_counter() - started) * n / 200
    scheduler.remove_all_jobs()
    first = time.time() + 1.0 + 2 * add_time
    for i in range(n):
        fire_time = first + i * SPACING
        scheduler.add_job(
            record_aps_lateness, "date", run_date=_at(fire_time), args=[fire_time], misfire_grace_time=None
        )
    LATE.clear()
    scheduler.resume()
    try:
        return await _collect(n, first, first - time.time())
    finally:
        aps.drop(scheduler)
