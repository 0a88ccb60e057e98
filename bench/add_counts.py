"""Server instructions of Redis adds: ``python -m bench.add_counts --store URL --pid PID --n N
[--producers P] [--stored M]``.

Against a ``redis-server`` run under callgrind (``valgrind --tool=callgrind redis-server --port
P``, process id ``PID``): makes 200 single awaited adds (the store opens, its scripts load) and
``M`` more by 100 concurrent loops (a store of that size: the id index's buckets grow with it),
zeroes the server's counters (``callgrind_control -z``), makes ``N`` more, one after another as a web
service does (a one-shot in 2100 with one argument, as ``bench.profile_adds``), or by ``P``
concurrent loops (coalesced adds: the server runs batches), and dumps the counters
(``callgrind_control -d``). The dump's total at ``2N`` minus the one at ``N``, divided by
``N``, is the server's instructions per add (the dump's own cost cancels out).
"""

from __future__ import annotations

import argparse
import asyncio
import uuid

from backbeat import BackgroundTaskScheduler, SchedulerConfig
from backbeat.api.config import RedisJobStoreConfig
from bench.callgrind import counted
from bench.peers import ARG, backbeat_job
from bench.profile_adds import FAR
from bench.stores import drop_redis_keys


async def main(url: str, pid: int, n: int, producers: int = 1, stored: int = 0) -> None:
    prefix = f"bench-add-counts-{uuid.uuid4().hex[:8]}"
    scheduler = BackgroundTaskScheduler(
        store=RedisJobStoreConfig(host=url, lock_prefix=prefix), config=SchedulerConfig(producer_only=True)
    )
    for _ in range(200):
        await scheduler.add_task(backbeat_job, "date", run_date=FAR, args=[ARG])

    async def producer(count: int) -> None:
        for _ in range(count):
            await scheduler.add_task(backbeat_job, "date", run_date=FAR, args=[ARG])

    await asyncio.gather(*(producer(stored // 100) for _ in range(100)))
    async with counted(pid):
        await asyncio.gather(*(producer(n // producers) for _ in range(producers)))
    await scheduler.shutdown()
    await drop_redis_keys(url, prefix)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--store", required=True, help="the callgrind server's URL (never a shared one)")
    parser.add_argument("--pid", type=int, required=True, help="the callgrind server's process id")
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--producers", type=int, default=1, help="concurrent adding loops (coalesced adds)")
    parser.add_argument("--stored", type=int, default=0, help="tasks added before the measured ones")
    args = parser.parse_args()
    asyncio.run(main(args.store, args.pid, args.n, args.producers, args.stored))
