"""The cost of recording run history, the figure issue 18 bounds (at most 10% added to a fire):
CPU per fire of one-shot no-op tasks with history off and on (this process's, the store's thread
included, plus the Redis server's), and fires/s, timed from the worker's start until its shutdown
has completed (and recorded) every run; on Redis, the history keys' memory per entry after a
round with history on (``MEMORY USAGE``, as :mod:`bench.history_counts` reads it).

Rounds alternate off and on in one process, in the order off, on, on, off, off, on, ... (each
pair of rounds measured back to back, the order swapped from one pair to the next, so a load that
rises or falls through the run favours neither). History's share is the median over the pairs of
on ÷ off - 1 of the CPU per fire (steadier than fires/s on a shared machine, where the rate follows
the load), printed with the quartiles and the range of the pairs' shares; the rates and CPU
figures are the medians of each mode.

Nothing in the measured process or server works by the second: the round waits for its last run
on an event set by the job (:mod:`bench.counted`), not by polling (a poll every millisecond cost
CPU in proportion to the round's wall time, which history lengthens: a bias towards a larger
share, and noise that followed the machine's load), and a Redis store is measured on a private
server (the shared server's ``used_cpu_*`` counts every other user's commands too).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from backbeat import BackgroundTaskScheduler
from bench import targets
from bench.counted import COUNT, noop
from bench.history_counts import history_memory
from bench.stores import StoreTarget, redis_server_cpu

ROUNDS = 7
"""Pairs of rounds (one off, one on) per store."""
TARGET_SHARE = 0.10
"""Issue 18: history adds at most this much to the cost of a fire."""


@dataclass(frozen=True, slots=True)
class HistoryCost:
    """Medians of the alternating rounds, history off and on, and each pair's share."""

    rate_off: float
    rate_on: float
    cpu_off: float
    """Seconds of CPU per fire: this process's and the Redis server's (0 for other stores)."""
    cpu_on: float
    shares: tuple[float, ...]
    """Each pair's on ÷ off - 1 of the CPU per fire, in the order measured."""
    server_off: float = 0.0
    """The Redis server's part of :attr:`cpu_off` (0 for other stores)."""
    server_on: float = 0.0
    memory: float | None = None
    """Bytes of the Redis history keys per entry after a round with history on, their median
    (None for other stores)."""

    @property
    def quartiles(self) -> tuple[float, float]:
        """The first and third quartiles of the pairs' shares (half the pairs lie between)."""
        low, _, high = statistics.quantiles(self.shares, n=4, method="inclusive")
        return low, high

    @property
    def share(self) -> float:
        """What history adds to a fire's CPU, as a fraction of it without history: the median
        of the pairs' shares."""
        return statistics.median(self.shares)

    def describe(self) -> str:
        met = "met" if self.share <= TARGET_SHARE else "missed"
        low, high = self.quartiles
        split = (
            f" (this process {(self.cpu_off - self.server_off) * 1e6:.1f} → "
            f"{(self.cpu_on - self.server_on) * 1e6:.1f}, the server {self.server_off * 1e6:.1f} → "
            f"{self.server_on * 1e6:.1f})"
            if self.server_off
            else ""
        )
        return (
            f"{self.cpu_off * 1e6:.1f} → {self.cpu_on * 1e6:.1f} µs CPU/fire{split} ({self.share:+.1%}, "
            f"{len(self.shares)} pairs: quartiles {low:+.1%}..{high:+.1%}, "
            f"range {min(self.shares):+.1%}..{max(self.shares):+.1%}, "
            f"target ≤ +{TARGET_SHARE:.0%}: {met}); {self.rate_off:,.0f} → {self.rate_on:,.0f} fires/s"
            + (f"; {self.memory:,.0f} B of history per entry" if self.memory is not None else "")
        )


async def _fires(
    target: StoreTarget, n: int, *, history: bool, batch: int = 1000
) -> tuple[float, float, float, float | None]:
    """Fires/s, CPU seconds per fire (process and Redis server), the server's part of them and
    the Redis history's bytes per entry (None: history off or another store), of ``n`` stored
    one-shots."""
    producer = target.producer()
    await producer.start()
    await producer.clear_all_jobs()
    due = datetime.now(UTC) - timedelta(seconds=1)
    for offset in range(0, n, batch):
        await producer.add_tasks(
            [{"func": noop, "trigger": "date", "run_date": due} for _ in range(min(batch, n - offset))]
        )
    worker: BackgroundTaskScheduler = target.worker(producer, history=history)
    COUNT.expect(n)
    server = await redis_server_cpu(target.url)
    started, cpu = targets._clock(), time.process_time()
    await worker.start()
    await COUNT.all_ran(timeout=600)  # ten minutes: 10,000 runs take seconds
    await worker.shutdown()  # waits for every completion, and the history written after it
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    server = await redis_server_cpu(target.url) - server
    cpu += server
    recorded = await _count(producer)
    if recorded != (n if history else 0):
        raise AssertionError(
            f"{recorded} history entries for {n} runs (history {'on' if history else 'off'})"
        )
    memory = None
    if history and target.prefix:
        sizes = await asyncio.to_thread(history_memory, target.url, target.prefix)
        memory = sum(sizes.values()) / n
    await producer.clear_all_jobs()
    await producer.shutdown()
    return n / elapsed, cpu / n, server / n, memory


async def _count(scheduler: BackgroundTaskScheduler) -> int:
    count, cursor = 0, None
    while True:
        page = await scheduler.run_history(limit=1000, cursor=cursor)
        count += len(page.entries)
        if (cursor := page.next_cursor) is None:
            return count


async def history_cost(target: StoreTarget, n: int, pairs: int = ROUNDS) -> HistoryCost:
    """Fires/s and CPU per fire with history off and on over ``pairs`` pairs of rounds (off, on,
    then on, off, ...), and each pair's share."""
    off: list[tuple[float, float, float, float | None]] = []
    on: list[tuple[float, float, float, float | None]] = []
    for pair in range(pairs):
        for history in (False, True) if pair % 2 == 0 else (True, False):
            (on if history else off).append(await _fires(target, n, history=history))
    return HistoryCost(
        rate_off=statistics.median(rate for rate, *_ in off),
        rate_on=statistics.median(rate for rate, *_ in on),
        cpu_off=statistics.median(cpu for _, cpu, *_ in off),
        cpu_on=statistics.median(cpu for _, cpu, *_ in on),
        shares=tuple(cpu_on / cpu_off - 1 for (_, cpu_off, *_), (_, cpu_on, *_) in zip(off, on, strict=True)),
        server_off=statistics.median(server for _, _, server, _ in off),
        server_on=statistics.median(server for _, _, server, _ in on),
        memory=statistics.median(memories) if (memories := [m for *_, m in on if m is not None]) else None,
    )
