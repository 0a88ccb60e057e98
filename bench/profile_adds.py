"""Profile single awaited adds: ``python -m bench.profile_adds [--started] [--n N] [--store URL]``.

Prints the adds/s, this process's CPU time per add (steadier than adds/s on a busy machine)
and cProfile's top functions by own time (``--sort cumulative`` for the
call tree's view), for a producer never started or (``--started``) a started worker.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import time
import uuid
from datetime import UTC, datetime

from backbeat import BackgroundTaskScheduler, SchedulerConfig
from backbeat.api.config import RedisJobStoreConfig
from bench.peers import ARG, backbeat_job
from bench.stores import drop_redis_keys

FAR = datetime(2100, 1, 1, tzinfo=UTC)


async def adds(url: str, n: int, started: bool, profile: cProfile.Profile | None) -> tuple[float, float]:
    """Adds/s and CPU seconds per add of ``n`` single awaited adds (profiled when ``profile``)
    on the store at ``url`` (Redis under a prefix of its own, else cleared after)."""
    prefix = f"bench-profile-{uuid.uuid4().hex[:8]}"
    redis = url.startswith("redis")
    spec: RedisJobStoreConfig | str = RedisJobStoreConfig(host=url, lock_prefix=prefix) if redis else url
    scheduler = BackgroundTaskScheduler(store=spec, config=SchedulerConfig(producer_only=not started))
    if started:
        await scheduler.start()
    for _ in range(200):  # warm up: the store opens, scripts load
        await scheduler.add_task(backbeat_job, "date", run_date=FAR, args=[ARG])
    began, cpu = time.perf_counter(), time.process_time()
    if profile is not None:
        profile.enable()
    for _ in range(n):
        await scheduler.add_task(backbeat_job, "date", run_date=FAR, args=[ARG])
    if profile is not None:
        profile.disable()
    rate, cpu = n / (time.perf_counter() - began), (time.process_time() - cpu) / n
    await scheduler.clear_all_jobs()
    await scheduler.shutdown()
    if redis:
        await drop_redis_keys(url, prefix)
    return rate, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--store", default="redis://127.0.0.1:6379/14", help="a store URL (Redis by default)")
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--started", action="store_true")
    parser.add_argument("--sort", default="tottime")
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args()
    mode = "started" if args.started else "never started"
    rate, cpu = asyncio.run(adds(args.store, args.n, args.started, None))
    print(f"{rate:,.0f} adds/s, {cpu * 1e6:.0f} µs CPU per add ({mode})")
    profile = cProfile.Profile()
    rate, cpu = asyncio.run(adds(args.store, args.n, args.started, profile))
    print(f"under the profiler: {rate:,.0f} adds/s, {cpu * 1e6:.0f} µs CPU per add")
    pstats.Stats(profile).sort_stats(args.sort).print_stats(args.top)


if __name__ == "__main__":
    main()
