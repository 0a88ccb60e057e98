"""Wake-up of another process: a producer adds an immediate task, a worker process runs it.

The delay is from the moment the producer calls ``schedule_immediate_task`` to the moment the
job starts in the worker (both read ``time.time()`` on this machine). Adds are sequential,
with a 20-40 ms pause between them so the worker is idle (asleep) when each one arrives.

``python -m bench.wakeup NAME URL PREFIX`` is the worker: it prints ``ready``, then
``<i> <start time>`` for each job, and stops when its stdin closes.
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
from pathlib import Path

from backbeat import BackgroundTaskScheduler
from bench.stores import StoreTarget

ROOT = Path(__file__).resolve().parent.parent
WARM_UP = 5


async def record_start(i: int) -> None:
    """The job: tells the producer when it started."""
    print(f"{i} {time.time()!r}", flush=True)


async def backbeat_wakeup(target: StoreTarget, n: int = 200) -> list[float]:
    """Delays (seconds) of ``n`` sequential add → start in a worker process."""
    worker = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.wakeup",
        *target.argv(),
        cwd=ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert worker.stdin is not None and worker.stdout is not None
    producer = target.producer()
    delays: list[float] = []
    try:
        if (await asyncio.wait_for(worker.stdout.readline(), 60)).strip() != b"ready":
            raise RuntimeError("the wake-up worker did not start")
        await producer.start()
        for i in range(WARM_UP + n):
            await asyncio.sleep(0.02 + random.random() * 0.02)
            added = time.time()
            await producer.schedule_immediate_task("wakeup", record_start, args=[i])
            reply = (await asyncio.wait_for(worker.stdout.readline(), 30)).split()
            if int(reply[0]) != i:
                raise RuntimeError(f"the worker ran job {reply[0]!r}, expected {i}")
            if i >= WARM_UP:
                delays.append(float(reply[1]) - added)
    finally:
        worker.stdin.close()
        try:
            await asyncio.wait_for(worker.wait(), 30)
        except TimeoutError:
            worker.kill()
        await producer.clear_all_jobs()
        await producer.shutdown()
    return delays


async def _work(target: StoreTarget) -> None:
    scheduler = BackgroundTaskScheduler(store=target.spec())
    await scheduler.start()
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await scheduler.shutdown()


if __name__ == "__main__":
    asyncio.run(_work(StoreTarget.from_argv(sys.argv[1:])))
