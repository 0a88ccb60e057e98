"""backbeat vs APScheduler 3.11, side by side in one run: ``python -m bench [--tasks N] [--stores ...]``.

Each figure is measured on no-op async jobs on this machine and printed with its ratio to
APScheduler's figure on the comparable store (its in-memory store for backbeat's memory and
SQLite stores, its ``RedisJobStore`` for backbeat's Redis store).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench import targets


@dataclass
class Figure:
    system: str
    store: str
    metric: str
    value: float
    unit: str
    baseline: float | None = None

    @property
    def ratio(self) -> str:
        return f"{self.value / self.baseline:.1f}x" if self.baseline else "-"


async def run(n: int, stores: list[str], redis_url: str) -> list[Figure]:
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="backbeat-bench-") as tmp:
        baselines: dict[tuple[str, str], float] = {}
        for store in ["memory", *(["redis"] if "redis" in stores else [])]:
            for metric, value in (await targets.apscheduler_figures(store, n, redis_url)).items():
                baselines[(store, metric)] = value
                figures.append(Figure("APScheduler 3.11", store, metric, value, "/s"))
        for store in stores:
            url = {
                "memory": "memory://",
                "sqlite": f"sqlite:///{Path(tmp) / 'bench.db'}",
                "redis": redis_url,
            }[store]
            compare_to = "redis" if store == "redis" else "memory"
            for metric, value in (await targets.backbeat_figures(url, n)).items():
                figures.append(
                    Figure("backbeat", store, metric, value, "/s", baselines.get((compare_to, metric)))
                )
    return figures


def print_table(figures: list[Figure]) -> None:
    print(f"| {'system':<17} | {'store':<7} | {'figure':<18} | {'value':>10} | vs APScheduler |")
    print(f"|{'-' * 19}|{'-' * 9}|{'-' * 20}|{'-' * 12}|{'-' * 16}|")
    for f in figures:
        print(f"| {f.system:<17} | {f.store:<7} | {f.metric:<18} | {f.value:>10,.0f} | {f.ratio:>14} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=10_000, help="tasks per measurement")
    parser.add_argument(
        "--stores", nargs="+", default=["memory", "sqlite"], choices=["memory", "sqlite", "redis"]
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    print(f"{args.tasks:,} no-op async tasks per figure, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC\n")
    print_table(asyncio.run(run(args.tasks, args.stores, args.redis_url)))


if __name__ == "__main__":
    main()
