"""Profile awaited adds:
``python -m bench.profile_adds [--started] [--producers P | --batch B] [--n N] [--store URL]
[--delayed] [--no-profile]``.

Prints the adds/s, this process's CPU time per add (steadier than adds/s on a busy machine),
a Redis server's CPU time per add (all its clients': use a server of the bench's own for a
clean figure) and cProfile's top functions by own time (``--sort cumulative`` for the
call tree's view), for a producer never started or (``--started``) a started worker. The
adds are awaited one after another, by ``--producers`` concurrent loops (coalesced adds), or
``--batch`` at a time through ``add_tasks`` (all at one time, as the main bench's batch adds);
``--delayed`` makes each add a ``schedule_delayed_task`` call (an hour from now, named) instead of
``add_task`` at a fixed date, as a web service would.
Only this process's main thread is profiled (not SQLite's store thread). ``--no-profile`` skips
the profiled pass, so that ``valgrind --tool=callgrind`` counts the plain adds alone: the count
with ``2N`` adds minus the count with ``N``, divided by ``N``, is the instructions per add.
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
from bench.stores import drop_redis_keys, redis_server_cpu

FAR = datetime(2100, 1, 1, tzinfo=UTC)


async def adds(
    url: str,
    n: int,
    started: bool,
    profile: cProfile.Profile | None,
    producers: int = 1,
    batch: int = 0,
    delayed: bool = False,
) -> tuple[float, float, float]:
    """Adds/s, and this process's and the Redis server's CPU seconds per add, of ``n`` awaited
    adds made by ``producers`` loops at once, or ``batch`` at a time (profiled when ``profile``)
    on the store at ``url`` (Redis under a prefix of its own, else cleared after)."""
    prefix = f"bench-profile-{uuid.uuid4().hex[:8]}"
    redis = url.startswith("redis")
    spec: RedisJobStoreConfig | str = RedisJobStoreConfig(host=url, lock_prefix=prefix) if redis else url
    scheduler = BackgroundTaskScheduler(store=spec, config=SchedulerConfig(producer_only=not started))
    if started:
        await scheduler.start()

    async def producer(count: int) -> None:
        if batch:
            request = {"func": backbeat_job, "trigger": "date", "run_date": FAR, "args": [ARG]}
            for start in range(0, count, batch):
                await scheduler.add_tasks([request] * min(batch, count - start))
            return
        if delayed:
            for _ in range(count):
                await scheduler.schedule_delayed_task("reminder", backbeat_job, 60, args=[ARG])
            return
        for _ in range(count):
            await scheduler.add_task(backbeat_job, "date", run_date=FAR, args=[ARG])

    await producer(200)  # warm up: the store opens, scripts load
    each = max(n // producers, 1)
    server = await redis_server_cpu(url)
    began, cpu = time.perf_counter(), time.process_time()
    if profile is not None:
        profile.enable()
    await asyncio.gather(*(producer(each) for _ in range(producers)))
    if profile is not None:
        profile.disable()
    done = each * producers
    rate, cpu = done / (time.perf_counter() - began), (time.process_time() - cpu) / done
    server = (await redis_server_cpu(url) - server) / done
    await scheduler.clear_all_jobs()
    await scheduler.shutdown()
    if redis:
        await drop_redis_keys(url, prefix)
    return rate, cpu, server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--store", default="redis://127.0.0.1:6379/14", help="a store URL (Redis by default)")
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--started", action="store_true")
    parser.add_argument("--producers", type=int, default=1, help="concurrent adding loops (coalesced adds)")
    parser.add_argument("--batch", type=int, default=0, help="adds per add_tasks call (0: single adds)")
    parser.add_argument("--sort", default="tottime")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument(
        "--no-profile", action="store_true", help="skip the cProfile pass (for callgrind's counts)"
    )
    parser.add_argument(
        "--delayed", action="store_true", help="schedule_delayed_task calls instead of add_task"
    )
    args = parser.parse_args()
    mode = ("started" if args.started else "never started") + f", {args.producers} producer(s)"
    if args.batch and args.delayed:
        parser.error("--delayed makes single schedule_delayed_task calls: not with --batch")
    mode += f", batches of {args.batch}" if args.batch else ""
    mode += ", schedule_delayed_task" if args.delayed else ""
    options = (args.producers, args.batch, args.delayed)
    rate, cpu, server = asyncio.run(adds(args.store, args.n, args.started, None, *options))
    print(
        f"{rate:,.0f} adds/s, {cpu * 1e6:.1f} µs CPU per add, server {server * 1e6:.1f} µs per add ({mode})"
    )
    if args.no_profile:
        return
    profile = cProfile.Profile()
    rate, cpu, _ = asyncio.run(adds(args.store, args.n, args.started, profile, *options))
    print(f"under the profiler: {rate:,.0f} adds/s, {cpu * 1e6:.0f} µs CPU per add")
    pstats.Stats(profile).sort_stats(args.sort).print_stats(args.top)


if __name__ == "__main__":
    main()
