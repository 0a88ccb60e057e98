"""The sharded store's scale-out: ``python -m bench.cluster [--tasks N] [--workers W] [--shards S]``.

For one Redis (the plain store) and for Redis Clusters of 1, 2 and 3 masters (no replicas, the
sharded store with S shards, default 12), W worker processes fire N no-op one-shots that are all due; it
prints fires/s, each master's share of the commands (``INFO commandstats``) and the server CPU
per fire on each master (``INFO cpu`` before and after). On a small machine the clients, not
Redis, cap fires/s: what tells whether the store scales is that the work splits evenly over the
masters and costs no more server CPU per fire than on one node.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import redis
from tests.redis_cluster import RedisCluster, start_cluster
from tests.redis_server import private_redis_server

from backbeat import BackgroundTaskScheduler, SchedulerConfig

FIRED = 0
LAST = 0.0
FIRST = 0.0


async def noop() -> None:
    """The job: counts itself."""
    global FIRED, FIRST, LAST
    LAST = time.time()
    FIRST = FIRST or LAST
    FIRED += 1


@dataclass
class Server:
    """What one Redis node has done so far: CPU seconds and commands."""

    cpu: float
    calls: int

    @classmethod
    def read(cls, port: int) -> Server:
        with contextlib.closing(redis.Redis(port=port)) as client:
            cpu = client.info("cpu")
            stats = client.info("commandstats")
        calls = sum(int(value["calls"]) for value in stats.values() if isinstance(value, dict))
        return cls(float(cpu["used_cpu_sys"]) + float(cpu["used_cpu_user"]), calls)


async def worker(url: str) -> None:
    """Fire what is due until nothing fired for a second; print count, first and last time."""
    scheduler = BackgroundTaskScheduler(store=url, config=SchedulerConfig(lease_seconds=10))
    await scheduler.start()
    while not FIRED or time.time() - LAST < 1.0:  # noqa: ASYNC110 - polls a counter the jobs bump
        await asyncio.sleep(0.05)
    await scheduler.shutdown()
    print(json.dumps({"fired": FIRED, "first": FIRST, "last": LAST}), flush=True)


async def single_adds(url: str, n: int) -> float:
    """Sequential awaited adds per second of tasks due far ahead (removed after)."""
    producer = BackgroundTaskScheduler(store=url, role="producer")
    far = datetime.now(UTC) + timedelta(days=365)
    started = time.perf_counter()
    for _ in range(n):
        await producer.add_task(noop, "date", run_date=far)
    rate = n / (time.perf_counter() - started)
    await producer.clear_all_jobs()
    await producer.shutdown()
    return rate


async def fill(url: str, n: int) -> None:
    producer = BackgroundTaskScheduler(store=url, role="producer")
    due = datetime.now(UTC) - timedelta(seconds=1)
    for offset in range(0, n, 1000):
        batch = [{"func": noop, "trigger": "date", "run_date": due} for _ in range(min(1000, n - offset))]
        await producer.add_tasks(batch)
    await producer.shutdown()


def fire(url: str, ports: list[int], n: int, workers: int) -> dict[str, object]:
    asyncio.run(fill(url, n))
    before = {port: Server.read(port) for port in ports}
    procs = [
        subprocess.Popen([sys.executable, "-m", "bench.cluster", "--worker", url], stdout=subprocess.PIPE)
        for _ in range(workers)
    ]
    reports = [json.loads(proc.communicate(timeout=600)[0]) for proc in procs]
    after = {port: Server.read(port) for port in ports}
    fired = sum(r["fired"] for r in reports)
    elapsed = max(r["last"] for r in reports) - min(r["first"] for r in reports if r["fired"])
    calls = {port: after[port].calls - before[port].calls for port in ports}
    cpu = {port: after[port].cpu - before[port].cpu for port in ports}
    return {
        "fired": fired,
        "fires/s": fired / elapsed,
        "share": [calls[port] / sum(calls.values()) for port in ports],
        "cpu us/fire per master": [cpu[port] / fired * 1e6 for port in ports],
        "cpu us/fire": sum(cpu.values()) / fired * 1e6,
    }


def single_node(n: int, workers: int) -> dict[str, object]:
    with (
        tempfile.TemporaryDirectory() as directory,
        private_redis_server(Path(directory), appendonly=False) as server,
    ):
        return fire(f"{server.url}?prefix=bench-{uuid.uuid4().hex[:8]}", [server.port], n, workers)


def on_cluster(
    masters: int, shards: int, n: int, workers: int, *, replicas: int = 0, durability: str = "leader"
) -> dict[str, object]:
    cluster: RedisCluster = start_cluster(masters=masters, replicas=replicas)
    try:
        url = cluster.url(f"bench-{uuid.uuid4().hex[:8]}", shards=shards, durability=durability)
        masters_now = [node.port for node in cluster.masters()]
        adds = asyncio.run(single_adds(url, min(n, 2000)))
        started = time.perf_counter()
        row = fire(url, masters_now, n, workers)
        row["adds+fires s"] = time.perf_counter() - started
        row["single adds/s"] = adds
        return row
    finally:
        cluster.stop()


def durability_cost(n: int, workers: int, shards: int) -> None:
    """Fires/s on 3 masters with a replica each, writes acknowledged by the master or by a replica."""
    print(f"\n{n} no-op one-shots on 3 masters + 3 replicas, {shards} shards")
    print("| durability | single awaited adds/s | fires/s | adding and firing them, s |")
    print("|---|---:|---:|---:|")
    for durability in ("leader", "replica"):
        row = on_cluster(3, shards, n, workers, replicas=1, durability=durability)
        adds, fires, elapsed = row["single adds/s"], row["fires/s"], row["adds+fires s"]
        print(f"| {durability} | {adds:,.0f} | {fires:,.0f} | {elapsed:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--masters", type=int, nargs="*", default=[1, 2, 3])
    parser.add_argument("--shards", type=int, default=12)
    parser.add_argument("--durability", action="store_true", help="also the cost of durability=replica")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        asyncio.run(worker(args.worker))
        return
    rows = [("one Redis (plain store)", single_node(args.tasks, args.workers))]
    rows += [
        (f"cluster, {m} master(s)", on_cluster(m, args.shards, args.tasks, args.workers))
        for m in args.masters
    ]
    base = rows[0][1]["cpu us/fire"]
    assert isinstance(base, float)
    print(f"{args.tasks} no-op one-shots, {args.workers} worker processes, {args.shards} shards on a cluster")
    print("| store | fires/s | commands per master | server CPU µs/fire (per master) | vs one Redis |")
    print("|---|---:|---|---|---:|")
    for name, row in rows:
        shares = " / ".join(f"{share:.0%}" for share in row["share"])  # type: ignore[attr-defined]
        per = " / ".join(f"{cpu:.1f}" for cpu in row["cpu us/fire per master"])  # type: ignore[attr-defined]
        total = row["cpu us/fire"]
        assert isinstance(total, float)
        print(f"| {name} | {row['fires/s']:,.0f} | {shares} | {total:.1f} ({per}) | {total / base:.2f}x |")
    if args.durability:
        durability_cost(args.tasks, args.workers, args.shards)


if __name__ == "__main__":
    main()
