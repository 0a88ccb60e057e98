"""The cost of recording run history: fires/s of one-shot no-op tasks with history off and on,
timed from the worker's start until its shutdown has completed (and recorded) every run.

Rounds alternate off and on in one process, so drift in the machine's load hits both alike;
the figure is the median of each, and the cost is on ÷ off - 1.
"""

from __future__ import annotations

import statistics
import time
from datetime import UTC, datetime, timedelta

from backbeat import BackgroundTaskScheduler
from bench import targets
from bench.stores import StoreTarget

ROUNDS = 3


async def _fires(target: StoreTarget, n: int, *, history: bool, batch: int = 1000) -> float:
    producer = target.producer()
    await producer.start()
    await producer.clear_all_jobs()
    due = datetime.now(UTC) - timedelta(seconds=1)
    for offset in range(0, n, batch):
        await producer.add_tasks(
            [
                {"func": targets.noop, "trigger": "date", "run_date": due}
                for _ in range(min(batch, n - offset))
            ]
        )
    worker: BackgroundTaskScheduler = target.worker(producer, history=history)
    targets.FIRED = 0
    started = targets._clock()
    await worker.start()
    await targets._until_fired(n)
    await worker.shutdown()  # waits for every completion, and the history written after it
    elapsed = time.perf_counter() - started
    recorded = await _count(producer)
    if recorded != (n if history else 0):
        raise AssertionError(
            f"{recorded} history entries for {n} runs (history {'on' if history else 'off'})"
        )
    await producer.clear_all_jobs()
    await producer.shutdown()
    return n / elapsed


async def _count(scheduler: BackgroundTaskScheduler) -> int:
    count, cursor = 0, None
    while True:
        page = await scheduler.run_history(limit=1000, cursor=cursor)
        count += len(page.entries)
        if (cursor := page.next_cursor) is None:
            return count


async def history_cost(target: StoreTarget, n: int) -> tuple[float, float]:
    """Median fires/s with history off and on, over :data:`ROUNDS` alternating rounds each."""
    off: list[float] = []
    on: list[float] = []
    for _ in range(ROUNDS):
        off.append(await _fires(target, n, history=False))
        on.append(await _fires(target, n, history=True))
    return statistics.median(off), statistics.median(on)
