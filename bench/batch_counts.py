"""Server instructions of Redis adds in fixed batches: ``python -m bench.batch_counts --store URL
--pid PID --n N [--batch B] [--stored M]``.

Against a ``redis-server`` run under callgrind (as ``bench.add_counts``): a ``RedisStore`` adds
``M`` one-shot tasks in batches of 1,000 and 100 more (its scripts load, the ``recent`` list is
left empty), zeroes the server's counters, adds ``N`` more in batches of exactly ``B`` and dumps
the counters. Unlike coalesced adds, whose batches follow the timing, every run sends the same
calls, and the ids are drawn from a seeded generator (the same in every tree): the dump's total
at ``2N`` minus the one at ``N``, divided by ``N``, moves by about 1.5k between runs.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import uuid
from datetime import UTC, datetime

from backbeat.model.records import Task
from backbeat.stores.redis import RedisStore
from bench.callgrind import counted
from bench.stores import drop_redis_keys

_AT = datetime(2100, 1, 1, tzinfo=UTC)


def _tasks(rng: random.Random, n: int) -> list[Task]:
    """``n`` far-future one-shots with random 32-hex-digit ids."""
    return [
        Task(
            id=f"{rng.getrandbits(128):032x}",
            name="batch",
            job="bench.batch_counts:_tasks",
            trigger={"type": "date", "run_date": _AT.isoformat()},
            next_run_time=_AT,
            created_at=_AT,
        )
        for _ in range(n)
    ]


async def main(url: str, pid: int, n: int, batch: int, stored: int) -> None:
    prefix = f"bench-batch-counts-{uuid.uuid4().hex[:8]}"
    store = RedisStore(url, prefix=prefix)
    await store.open()
    rng = random.Random(n)
    try:
        for _ in range(stored // 1000):
            await store.add(_tasks(rng, 1000))
        await store.add(_tasks(rng, 100))
        async with counted(pid):
            for _ in range(n // batch):
                await store.add(_tasks(rng, batch))
    finally:
        await store.close()
        await drop_redis_keys(url, prefix)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--store", required=True, help="the callgrind server's URL (never a shared one)")
    parser.add_argument("--pid", type=int, required=True, help="the callgrind server's process id")
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--stored", type=int, default=0, help="tasks added before the measured ones")
    args = parser.parse_args()
    asyncio.run(main(args.store, args.pid, args.n, args.batch, args.stored))
