"""A scheduler's memory and claim cost with many stored tasks, each measured in a fresh process.

For a shared store (SQLite, Redis...) one process fills the store with far-future one-shot
tasks through ``add_tasks`` and another starts a scheduler on it: its RSS is what a
scheduler costs with that many tasks stored. A memory store holds its tasks in the
scheduler's own process, so that process fills it and its RSS includes every task.

The probes, each a median: ``claim_due`` with nothing due, ``next_wakeup``, add→run
(an immediate task added and run in that process), and ``Store.list`` of a page of 100
tasks from the start and from 15/16 of the way through. The same probes run with 1,000 stored
tasks, to show whether the cost grows with the number stored.

``python -m bench.memory fill|probe NAME URL PREFIX N`` and ``python -m bench.memory aps STORE
REDIS_URL N`` are the subprocesses; each prints one JSON line.
"""

from __future__ import annotations

import asyncio
import gc
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from backbeat import BackgroundTaskScheduler
from bench import aps
from bench.stores import StoreTarget, redis_used_memory
from bench.targets import FAR

ROOT = Path(__file__).resolve().parent.parent
BATCH = 5000
SMALL = 1000
PAGE = 100
LAST_PAGES = "f0"
"""A cursor 15/16 of the way through the listing (the stored tasks' ids are random hex)."""
RAN = asyncio.Event()


async def far_future() -> None:
    """The stored tasks' job (never runs)."""


async def probe_ran() -> None:
    RAN.set()


def rss_mb() -> float:
    """This process's resident set size (``VmRSS``), MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


async def median(call: Callable[[], Awaitable[Any]], repeat: int) -> float:
    for _ in range(3):  # warm up connections and caches
        await call()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        await call()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


async def fill(scheduler: BackgroundTaskScheduler, n: int) -> None:
    request = {"func": far_future, "trigger": "date", "run_date": FAR}
    for offset in range(0, n, BATCH):
        await scheduler.add_tasks([request] * min(BATCH, n - offset))


async def _fill(target: StoreTarget, n: int) -> dict[str, float]:
    producer = target.producer()
    await producer.start()
    started = time.perf_counter()
    await fill(producer, n)
    seconds = time.perf_counter() - started
    await producer.shutdown()
    return {"seconds": seconds}


async def _probe(target: StoreTarget, n: int) -> dict[str, float]:
    scheduler = BackgroundTaskScheduler(store=target.spec())
    started = time.perf_counter()
    if not target.shared:
        await fill(scheduler, n)
    filled = time.perf_counter() - started
    await scheduler.start()
    store = scheduler.store

    async def add_run() -> None:
        RAN.clear()
        await scheduler.schedule_immediate_task("probe", probe_ran)
        await RAN.wait()

    def claim() -> Awaitable[Any]:
        now = datetime.now(UTC)
        return store.claim_due("bench-probe", now=now, lease=timedelta(seconds=10), limit=500)

    figures = {
        **({} if target.shared else {"seconds": filled}),
        "claim_due": await median(claim, 200),
        "next_wakeup": await median(store.next_wakeup, 200),
        "add_run": await median(add_run, 30),
        # a page of the listing at the start and near the end (task ids are hex: "f0" is 15/16 in)
        "list_first": await median(lambda: store.list(limit=PAGE), 50),
        "list_last": await median(lambda: store.list(cursor=LAST_PAGES, limit=PAGE), 50),
    }
    gc.collect()
    figures["rss_mb"] = rss_mb()
    await scheduler.shutdown()
    return figures


async def _aps(store: str, redis_url: str, n: int) -> dict[str, float]:
    scheduler = aps.scheduler(store, redis_url)
    scheduler.start(paused=True)
    started = time.perf_counter()
    for _ in range(n):
        scheduler.add_job(far_future, "date", run_date=FAR)
    fill_seconds = time.perf_counter() - started
    scheduler.resume()
    job_store = scheduler._lookup_jobstore("default")

    async def add_run() -> None:
        RAN.clear()
        scheduler.add_job(probe_ran, "date", run_date=datetime.now(UTC), misfire_grace_time=None)
        await RAN.wait()

    async def claim() -> Any:
        return job_store.get_due_jobs(datetime.now(UTC))

    async def next_wakeup() -> Any:
        return job_store.get_next_run_time()

    figures = {
        "seconds": fill_seconds,
        "claim_due": await median(claim, 200),
        "next_wakeup": await median(next_wakeup, 200),
        "add_run": await median(add_run, 30),
    }
    gc.collect()
    figures["rss_mb"] = rss_mb()
    aps.drop(scheduler)
    return figures


async def subprocess(*args: str | int, timeout: float = 3600) -> dict[str, float]:
    """Run ``python -m bench.memory *args`` and return what it printed."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.memory", *map(str, args), cwd=ROOT, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(process.communicate(), timeout)
    if process.returncode:
        raise RuntimeError(f"bench.memory {' '.join(map(str, args))} exited with {process.returncode}")
    result: dict[str, float] = json.loads(out.decode().strip().splitlines()[-1])
    return result


async def backbeat_stored(target: StoreTarget, n: int) -> tuple[dict[str, float], dict[str, float]]:
    """Probe figures with 1,000 and with ``n`` tasks stored; the latter also has ``seconds`` (to fill it)
    and, for Redis, ``redis_mb``: how much the server's ``used_memory`` grew."""
    if not target.shared:
        return await subprocess("probe", *target.argv(), SMALL), await subprocess("probe", *target.argv(), n)
    before = await redis_used_memory(target.url) if target.prefix else 0
    first = await subprocess("fill", *target.argv(), SMALL)
    small = await subprocess("probe", *target.argv(), SMALL)
    large = await subprocess("fill", *target.argv(), n - SMALL)
    large["seconds"] += first["seconds"]
    large |= await subprocess("probe", *target.argv(), n)
    if target.prefix:
        large["redis_mb"] = (await redis_used_memory(target.url) - before) / 2**20
    return small, large


def _main(argv: list[str]) -> dict[str, float]:
    mode, n = argv[0], int(argv[-1])
    if mode == "aps":
        return asyncio.run(_aps(argv[1], argv[2], n))
    target = StoreTarget.from_argv(argv[1:-1])
    return asyncio.run((_fill if mode == "fill" else _probe)(target, n))


if __name__ == "__main__":
    # Run the imported module, not __main__: the jobs it stores are referenced as bench.memory:...
    from bench import memory

    print(json.dumps(memory._main(sys.argv[1:])))
