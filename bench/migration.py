"""Migration speed, beside APScheduler reading the same store: ``python -m bench.migration [--jobs N]``.

APScheduler 3.11 fills a job store with N jobs by its own ``add_job`` (cron, interval and date in
turn, each with arguments). Then, on that store: APScheduler's ``get_all_jobs`` (it unpickles every
job: what its scheduler does at start), backbeat's dry run (read, restricted unpickling and
conversion, nothing written), and ``backbeat.migrate`` into each backbeat store (as the CLI does).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from backbeat.migrate import MigrationOptions, Source, SourceOptions, migrate, open_source
from backbeat.stores import store_from_url

REF = "bench.migration:job"


def job(*args: Any, **kwargs: Any) -> None:
    """What the jobs call (never called)."""


def fill(jobstore: Any, n: int) -> None:
    from apscheduler.schedulers.background import BackgroundScheduler

    scheduler = BackgroundScheduler(jobstores={"default": jobstore}, timezone="Europe/Paris")
    scheduler.start(paused=True)
    kinds: list[tuple[str, dict[str, Any]]] = [
        ("cron", {"hour": "8-18", "minute": "*/15", "timezone": "America/New_York"}),
        ("interval", {"minutes": 5}),
        ("date", {"run_date": "2031-01-01 10:00:00"}),
    ]
    for i in range(n):
        trigger, args = kinds[i % 3]
        scheduler.add_job(REF, trigger, id=f"job-{i:06d}", args=[i, "order"], kwargs={"n": i}, **args)
    scheduler.shutdown(wait=False)


def timed(step: Callable[[], object]) -> float:
    started = time.perf_counter()
    step()
    return time.perf_counter() - started


async def migrate_into(source: Source, url: str | None) -> float:
    target = store_from_url(url) if url else None
    if target is not None:
        await target.open()
        await target.clear()
    try:
        started = time.perf_counter()
        report = await migrate(source, target, MigrationOptions(dry_run=target is None))
        elapsed = time.perf_counter() - started
        assert len(report.jobs) == report.count(report.jobs[0].outcome), "every job migrated"
        return elapsed
    finally:
        if target is not None:
            await target.clear()
            await target.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--redis", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--postgresql", default="postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    from apscheduler.jobstores.redis import RedisJobStore
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore

    tmp = Path(tempfile.mkdtemp(prefix="bench-migration-"))
    name, redis_parts = f"bench-mig-{os.getpid()}", urlsplit(args.redis)
    keys = {"jobs_key": f"{name}.jobs", "run_times_key": f"{name}.run_times"}
    connect = {"host": redis_parts.hostname, "port": redis_parts.port or 6379}
    sqlite_url = f"sqlite:///{tmp / 'aps.sqlite'}"
    sources: dict[str, tuple[Callable[[], Any], str, SourceOptions]] = {
        "Redis": (lambda: RedisJobStore(**keys, **connect), args.redis, SourceOptions(**keys)),
        "SQLite": (lambda: SQLAlchemyJobStore(url=sqlite_url), sqlite_url, SourceOptions()),
    }
    targets = {
        "SQLite": f"sqlite:///{tmp / 'backbeat.db'}",
        "Redis": f"{args.redis}?prefix={name}-bb",
        "PostgreSQL": f"{args.postgresql}?prefix=bench_mig_{os.getpid()}",
    }
    print(f"{args.jobs:,} jobs added by APScheduler 3.11's add_job; jobs/s (seconds)")
    for label, (make, url, options) in sources.items():
        filled = timed(lambda: fill(make(), args.jobs))  # noqa: B023 - called at once
        print(f"\nsource: APScheduler {label} job store (filled in {filled:.1f}s)")
        aps = make()
        row("APScheduler get_all_jobs (unpickle all)", args.jobs, timed(aps.get_all_jobs))
        source = open_source(url, options)
        try:
            row(
                "backbeat dry run (read, unpickle, convert)",
                args.jobs,
                asyncio.run(migrate_into(source, None)),
            )
            for target, target_url in targets.items():
                row(
                    f"backbeat migrate into {target}",
                    args.jobs,
                    asyncio.run(migrate_into(source, target_url)),
                )
        finally:
            source.close()
            aps.remove_all_jobs()
            aps.shutdown()


def row(what: str, n: int, seconds: float) -> None:
    print(f"  {what:<46} {n / seconds:>9,.0f}/s  ({seconds:.2f}s)")


if __name__ == "__main__":
    main()
