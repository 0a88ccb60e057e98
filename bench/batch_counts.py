"""Server instructions of Redis adds in fixed batches: ``python -m bench.batch_counts --store URL
--pid PID --n N [--batch B] [--stored M]``.

Against a ``redis-server`` run under callgrind (as ``bench.add_counts``): a ``RedisStore`` adds
``M`` one-shot tasks in batches of 1,000 and 100 more (its scripts load, the ``recent`` list is
left empty), zeroes the server's counters, adds ``N`` more in batches of exactly ``B`` and dumps
the counters. Unlike coalesced adds, whose batches follow the timing, every run sends the same
calls, and the ids come from one generator of a fixed seed (the same in every tree and for every
``N``): a run at ``2N`` adds the ``M + 100`` tasks and then the ``N`` of the run at ``N``, id for
id, before ``N`` more, so the dump's total at ``2N`` minus the one at ``N``, divided by ``N``, is
what ``N`` more adds cost onto the same store.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

from backbeat.model.records import Task
from backbeat.stores.redis import RedisStore
from bench.callgrind import counted
from bench.stores import drop_redis_keys

_AT = datetime(2100, 1, 1, tzinfo=UTC)
SEED = 0
"""The ids' seed: one for every run, so that the runs at ``N`` and ``2N`` share their first ids."""


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


def batches(n: int, batch: int, stored: int) -> tuple[Iterator[list[Task]], Iterator[list[Task]]]:
    """The batches added before the counted ones (``stored`` tasks, then 100), and the counted
    ones (``n // batch`` of ``batch``), made as they are taken from one generator of :data:`SEED`:
    the first taken wholly before the second."""
    rng = random.Random(SEED)
    before = (_tasks(rng, size) for size in [1000] * (stored // 1000) + [100])
    return before, (_tasks(rng, batch) for _ in range(n // batch))


async def main(url: str, pid: int, n: int, batch: int, stored: int) -> None:
    prefix = f"bench-batch-counts-{uuid.uuid4().hex[:8]}"
    store = RedisStore(url, prefix=prefix)
    await store.open()
    before, measured = batches(n, batch, stored)
    try:
        for tasks in before:
            await store.add(tasks)
        async with counted(pid):
            for tasks in measured:
                await store.add(tasks)
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
