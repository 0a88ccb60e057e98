"""Profile the cost of a run: ``python -m bench.profile_fires [--n N] [--store URL] [--no-history]``.

Stores ``N`` due one-shot no-op tasks, then times one worker from its start until its shutdown
has completed (and recorded) every run, and prints fires/s, this process's CPU per run (steadier
than fires/s on a busy machine) and, for Redis, the server's CPU per fire; ``--profile`` adds
cProfile's top functions. ``--phase add`` / ``--phase fire`` split the two halves into separate
processes, so that ``valgrind --tool=callgrind python -m bench.profile_fires --phase fire`` counts
the instructions of the fire phase only: the count with ``2N`` runs minus the count with ``N``,
divided by ``N``, is the instructions per run (start-up and imports cancel out).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import time
from datetime import UTC, datetime, timedelta

from backbeat import BackgroundTaskScheduler, SchedulerConfig
from backbeat.api.config import RedisJobStoreConfig, StoreConfig
from bench import targets
from bench.counted import COUNT, noop
from bench.stores import redis_server_cpu

PREFIX = "bench-profile-fires"
_US = timedelta(microseconds=1)


def _spec(url: str) -> StoreConfig | str:
    return RedisJobStoreConfig(host=url, lock_prefix=PREFIX) if url.startswith("redis") else url


def _set_prefix(prefix: str) -> None:
    global PREFIX
    PREFIX = prefix


async def add(url: str, n: int, *, distinct: bool = False) -> None:
    """Store ``n`` due no-op one-shots (after clearing the store), all due at one time or
    (``distinct``) each a microsecond after the one before, as one-shots added one by one are."""
    producer = BackgroundTaskScheduler(store=_spec(url), config=SchedulerConfig(producer_only=True))
    await producer.clear_all_jobs()
    due = datetime.now(UTC) - timedelta(seconds=1)
    for offset in range(0, n, 1000):
        count = min(1000, n - offset)
        await producer.add_tasks(
            [
                {"func": noop, "trigger": "date", "run_date": due + (offset + i) * _US if distinct else due}
                for i in range(count)
            ]
        )
    await producer.shutdown()


async def fire(
    url: str, n: int, *, history: bool, lease: float = 10.0, profile: cProfile.Profile | None = None
) -> tuple[float, float, float]:
    """Fires/s, process CPU seconds per run and server CPU seconds per fire of the ``n`` stored
    runs, from the worker's start until its shutdown."""
    worker = BackgroundTaskScheduler(
        store=_spec(url), config=SchedulerConfig(lease_seconds=lease), history=history
    )
    COUNT.expect(n)
    server = await redis_server_cpu(url)
    began, cpu = targets._clock(), time.process_time()
    if profile is not None:
        profile.enable()
    await worker.start()
    await COUNT.all_ran(timeout=3600)  # under callgrind a run takes fifty times longer
    await worker.shutdown()
    if profile is not None:
        profile.disable()
    elapsed, cpu = time.perf_counter() - began, time.process_time() - cpu
    server = await redis_server_cpu(url) - server
    return n / elapsed, cpu / n, server / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--store", default="redis://127.0.0.1:6379/14", help="a store URL (Redis by default)")
    parser.add_argument("--n", type=int, default=10000)
    parser.add_argument("--no-history", action="store_true")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument(
        "--lease",
        type=float,
        default=10.0,
        help="seconds (600 under callgrind: no lease renewal, whose work grows with the wall time)",
    )
    parser.add_argument("--prefix", default=PREFIX, help="Redis key prefix (one per concurrent use)")
    parser.add_argument("--distinct", action="store_true", help="one-shots due at times of their own")
    parser.add_argument("--phase", choices=("add", "fire", "both"), default="both")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--sort", default="tottime")
    parser.add_argument("--top", type=int, default=40)
    args = parser.parse_args()
    history = not args.no_history
    _set_prefix(args.prefix)
    profile = cProfile.Profile() if args.profile else None
    for _ in range(args.rounds):
        if args.phase in ("add", "both"):
            asyncio.run(add(args.store, args.n, distinct=args.distinct))
        if args.phase in ("fire", "both"):
            rate, cpu, server = asyncio.run(
                fire(args.store, args.n, history=history, lease=args.lease, profile=profile)
            )
            print(
                f"{rate:,.0f} fires/s, {cpu * 1e6:.1f} µs process CPU per run, "
                f"{server * 1e6:.1f} µs server CPU per fire (history {'on' if history else 'off'})"
            )
    if profile is not None:
        pstats.Stats(profile).sort_stats(args.sort).print_stats(args.top)


if __name__ == "__main__":
    main()
