"""backbeat vs APScheduler 3.11, side by side in one run: ``python -m bench [--stores ...] [--million]``.

``--sections counts`` counts history's share of a fire in instructions under callgrind
(:mod:`bench.history_counts`: the repeatable form of the history section's CPU time; not run
unless named). ``--sections peers`` measures backbeat beside arq, SAQ and APScheduler on a private Redis
(:mod:`bench.peers`); ``BACKBEAT_BENCH_NO_HIREDIS=1`` makes redis-py parse replies in Python.

No-op async jobs on this machine: adds/s and fires/s, lateness at a steady 1,000 fires/s,
wake-up of another process, and a scheduler's RSS and claim cost with many tasks stored.
Ratios compare with APScheduler's figure on the comparable job store (its memory store for
backbeat's memory and SQLite stores, its ``RedisJobStore`` for backbeat's Redis store).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from bench import aps, history, history_counts, lateness, memory, peers, report, targets, wakeup
from bench.redis_server import private_redis
from bench.report import Figure, Row
from bench.stores import KNOWN, StoreTarget, drop_redis_keys

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/14"
"""The redis store's server unless ``--redis-url`` names one."""
SECTIONS = ("throughput", "lateness", "wakeup", "memory", "history", "peers", "counts")
DEFAULT_SECTIONS = SECTIONS[:-1]
"""Every section but ``counts``, which needs valgrind and takes minutes of callgrind."""


def on_private_redis(target_url: str, given: str | None) -> bool:
    """Whether the history section measures a Redis store on a private server of its own: the
    ``redis`` store of the default server, not one ``--redis-url`` (``given``) or a store URL
    named (whose server's CPU then counts every client's commands)."""
    return given is None and target_url == DEFAULT_REDIS_URL


class Bench:
    def __init__(self, args: argparse.Namespace, stores: list[StoreTarget]) -> None:
        self.args = args
        self.stores = stores
        self.notes: list[str] = []
        baselines = [s for s in aps.STORES if any(t.baseline == s for t in stores)]
        self.aps_rows = {store: Row(aps.SYSTEM, store) for store in baselines}
        self.rows = {t.name: Row("backbeat", t.name, t.baseline) for t in stores}
        self.peer_rounds: list[dict[str, dict[str, float]]] = []

    async def throughput(self) -> None:
        for store, row in self.aps_rows.items():
            for metric, value in (
                await targets.apscheduler_figures(store, self.args.tasks, self.redis)
            ).items():
                row.figures[metric] = report.rate(value)
        for target in self.stores:
            for metric, value in (await targets.backbeat_figures(target, self.args.tasks)).items():
                self.rows[target.name].figures[metric] = report.rate(value)

    async def lateness(self) -> None:
        column, n = "lateness p50 / p99 ms", self.args.lateness_tasks
        for store, row in self.aps_rows.items():
            row.figures[column] = report.spread(await lateness.apscheduler_lateness(store, n, self.redis))
        for target in self.stores:
            self.rows[target.name].figures[column] = report.spread(
                await lateness.backbeat_lateness(target, n)
            )

    async def wakeup(self) -> None:
        column = "wake-up p50 / p99 ms"
        for row in self.aps_rows.values():
            row.figures[column] = report.na("not shared")
        if self.aps_rows:
            self.notes.append(
                "APScheduler wake-up n/a: a job store may not be shared by schedulers in several "
                "processes (its FAQ), and nothing wakes a scheduler when another process adds a job"
            )
        if any(not t.shared for t in self.stores):
            self.notes.append("memory store wake-up n/a: the store lives in one process")
        for target in self.stores:
            self.rows[target.name].figures[column] = (
                report.spread(await wakeup.backbeat_wakeup(target, self.args.wakeups))
                if target.shared
                else report.na("not shared")
            )

    async def history(self) -> None:
        n = self.args.tasks
        column = report.HISTORY_CPU
        for row in self.aps_rows.values():
            row.figures[column] = report.na("no history")
        for target in self.stores:
            if on_private_redis(target.url, self.args.redis_url):
                with private_redis() as url:
                    cost = await history.history_cost(
                        dataclasses.replace(target, url=url), n, self.args.history_pairs
                    )
            else:
                cost = await history.history_cost(target, n, self.args.history_pairs)
            self.rows[target.name].figures[column] = Figure(cost.describe())
        self.notes.append(
            f"history: {n:,} one-shot runs from worker start until its shutdown completed and recorded "
            f"them all, {self.args.history_pairs} pairs of rounds off and on back to back (the order swapped "
            "each pair); CPU per fire is this process's (its store thread included) plus the Redis "
            "server's (a private one, started for this section, unless --redis-url names one: then all "
            "its clients' commands count), medians of each mode, and the share "
            "is what history adds to it, the median of the pairs' shares with their quartiles and "
            f"range (issue 18: at most {history.TARGET_SHARE:.0%}); "
            "CPU time moves with the machine's load: the counts section (--sections counts) is the "
            "repeatable figure"
        )

    async def counts(self) -> None:
        """History's share in instructions per fire (client and server), of the Redis and SQLite
        stores among those measured; always on a private ``redis-server`` under callgrind."""
        n = self.args.counts_n
        column = report.HISTORY_COUNTS
        for row in self.aps_rows.values():
            row.figures[column] = report.na("no history")
        for target in self.stores:
            if target.name not in history_counts.STORES:
                self.rows[target.name].figures[column] = report.na("not counted")
                continue
            with tempfile.TemporaryDirectory(prefix="backbeat-counts-") as directory:
                counted = await asyncio.to_thread(
                    history_counts.history_counts, target.name, n, Path(directory)
                )
            self.rows[target.name].figures[column] = Figure(counted.describe())
            self.notes.append("\n".join(counted.lines()))
        self.notes.append(
            f"counts: instructions per fire under callgrind (PYTHONHASHSEED=0), (count at {2 * n:,} - "
            f"count at {n:,}) / {n:,} (--counts-n), of bench.counted_fires' fire phases in one client "
            "process and, for Redis, a private redis-server under callgrind (serverCron left out); "
            "repeatable whatever the machine's load, unlike the history section's CPU time"
        )

    async def memory(self) -> None:
        n = self.args.stored
        for store, row in self.aps_rows.items():
            aps_n = n if store == "memory" else min(n, self.args.aps_redis_stored)
            small = await memory.subprocess("aps", store, self.redis, memory.SMALL)
            large = await memory.subprocess("aps", store, self.redis, aps_n)
            self._stored(row, small, large, n, aps_n)
            self.notes.append(f"APScheduler {store}: {aps_n:,} jobs added in {large['seconds']:.0f}s")
        for target in self.stores:
            small, large = await memory.backbeat_stored(target, n)
            self._stored(self.rows[target.name], small, large, n, n)
            self.notes.append(
                f"backbeat {target.name}: {n:,} tasks added with add_tasks (batches of {memory.BATCH:,}) "
                f"in {large['seconds']:.0f}s"
            )
            if "redis_mb" in large:
                per_task = large["redis_mb"] * 2**20 / n
                self.notes.append(
                    f"backbeat {target.name}: Redis server used_memory grew by "
                    f"{large['redis_mb']:,.0f} MB for {n:,} tasks ({per_task:,.0f} B/task)"
                )
            self.notes.append(
                f"backbeat {target.name}: a page of {memory.PAGE} tasks (Store.list) took "
                f"{small['list_first'] * 1e6:,.0f} µs first, {small['list_last'] * 1e6:,.0f} µs near the end "
                f"with {memory.SMALL:,} stored; {large['list_first'] * 1e6:,.0f} and "
                f"{large['list_last'] * 1e6:,.0f} µs with {n:,}"
            )

    async def peers(self) -> None:
        """Each system on one private Redis, ``--rounds`` times in turn; the median of each figure."""
        args = self.args
        counts = peers.Counts(args.tasks, args.pending, min(args.pending, args.aps_pending))
        systems = list(peers.SYSTEMS)
        rounds: list[dict[str, dict[str, float]]] = []
        with private_redis() as url:
            server = peers.Server(url)
            try:
                for number in range(self.args.rounds):
                    # each round starts with the next system: a machine that speeds up or slows
                    # down through the run favours no system's place in the order
                    order = systems[number % len(systems) :] + systems[: number % len(systems)]
                    rounds.append({name: await peers.SYSTEMS[name](server, counts) for name in order})
            finally:
                await server.close()
        self.peer_rounds = [{name: measured[name] for name in systems} for measured in rounds]
        self.notes.append(
            f"peers: {counts.jobs:,} jobs per rate, {counts.pending:,} pending for memory "
            f"(APScheduler {counts.aps_pending:,}), median of {self.args.rounds} rounds (each starting with "
            f"the next system; ratios taken within a round, their median and range), one private "
            f"redis-server; redis-py parses replies with {'hiredis' if _hiredis() else 'Python'}"
        )

    @staticmethod
    def _stored(row: Row, small: dict[str, float], large: dict[str, float], n: int, measured: int) -> None:
        at = "" if measured == n else f" at {measured:,}"
        comparable = measured == n
        row.figures["RSS MB, N stored"] = Figure(
            f"{large['rss_mb']:,.0f}{at}", large["rss_mb"] if comparable else None
        )
        for key, column in (
            ("claim_due", "claim_due µs, 1k → N"),
            ("next_wakeup", "next_wakeup µs, 1k → N"),
            ("add_run", "add→run µs, 1k → N"),
        ):
            row.figures[column] = Figure(report.flat(small[key], large[key]).text + at)

    @property
    def redis(self) -> str:
        url: str = self.args.redis_url or DEFAULT_REDIS_URL
        return url

    async def run(self) -> list[Row]:
        try:
            for section in SECTIONS:
                if section in self.args.sections:
                    await getattr(self, section)()
        finally:
            for target in self.stores:
                if target.prefix:
                    await drop_redis_keys(target.url, target.prefix)
        return [*self.aps_rows.values(), *self.rows.values()]


def _hiredis() -> bool:
    import redis.utils

    return bool(redis.utils.HIREDIS_AVAILABLE)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=10_000, help="tasks per adds/s and fires/s figure")
    parser.add_argument(
        "--stores",
        nargs="+",
        default=["memory", "sqlite"],
        metavar="STORE",
        help=f"backbeat stores: {', '.join(KNOWN)} or a store URL (postgresql://...)",
    )
    parser.add_argument("--redis-url", help=f"the Redis of the redis store (default {DEFAULT_REDIS_URL})")
    parser.add_argument("--lateness-tasks", type=int, default=3000, help="fires at 1,000/s (default 3s)")
    parser.add_argument("--wakeups", type=int, default=200, help="sequential add → run in a worker process")
    parser.add_argument("--stored", type=int, default=100_000, help="tasks stored for RSS and claim cost")
    parser.add_argument(
        "--million", action="store_const", const=1_000_000, dest="stored", help="--stored 1e6"
    )
    parser.add_argument(
        "--aps-redis-stored",
        type=int,
        default=100_000,
        help="most jobs APScheduler's RedisJobStore gets (it adds ~3,000/s: 1e6 would take 6 min)",
    )
    parser.add_argument(
        "--sections",
        nargs="+",
        default=list(DEFAULT_SECTIONS),
        choices=SECTIONS,
        help="sections to run (default: all but counts)",
    )
    parser.add_argument("--pending", type=int, default=100_000, help="peers: pending jobs for memory/job")
    parser.add_argument("--aps-pending", type=int, default=20_000, help="peers: APScheduler's pending jobs")
    parser.add_argument("--rounds", type=int, default=2, help="peers: rounds (medians are shown)")
    parser.add_argument(
        "--history-pairs",
        type=int,
        default=history.ROUNDS,
        help=f"history: pairs of rounds off and on (default {history.ROUNDS}; their shares' median is shown)",
    )
    parser.add_argument(
        "--counts-n",
        type=int,
        default=history_counts.N,
        help=f"counts: runs of the smaller fire phase (default {history_counts.N:,}, then twice that)",
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.ERROR)
    load = os.getloadavg()[0]
    print(
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, load {load:.2f}; "
        f"{args.tasks:,} tasks per adds/s and fires/s, {args.lateness_tasks:,} lateness fires, "
        f"{args.wakeups} wake-ups, N = {args.stored:,} stored\n"
    )
    with tempfile.TemporaryDirectory(prefix="backbeat-bench-") as tmp:
        stores = [
            StoreTarget.parse(token, Path(tmp), args.redis_url or DEFAULT_REDIS_URL) for token in args.stores
        ]
        bench = Bench(args, stores)
        rows = asyncio.run(bench.run())
    if any(row.figures for row in rows):
        print(report.table(rows))
    if bench.peer_rounds:
        print("\nbackbeat and its peers on one Redis (vs best peer: above 1x backbeat is better):\n")
        print(report.peers_table(bench.peer_rounds, peers.FIGURES, peers.LOWER_IS_BETTER))
    print(
        "\n(x): backbeat ÷ APScheduler on the compared job store (memory for backbeat's memory and "
        "SQLite stores, RedisJobStore for Redis); higher is better for rates, lower for lateness p99 "
        "and RSS. µs figures are medians in the scheduler's process; add→run is an immediate task "
        "added and run in that process.\n"
    )
    for note in bench.notes:
        print(f"* {note}")
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
