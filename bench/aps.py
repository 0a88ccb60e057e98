"""APScheduler 3.11 set up the way the bench compares it: ``AsyncIOScheduler`` on one job store."""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlparse

SYSTEM = "APScheduler 3.11"
STORES = ("memory", "redis")


def scheduler(store: str, redis_url: str) -> Any:
    """An ``AsyncIOScheduler`` (UTC) on an empty ``MemoryJobStore`` or ``RedisJobStore``.

    The Redis store's keys are unique to this process and emptied first; call :func:`drop`.
    """
    from apscheduler.jobstores.memory import MemoryJobStore
    from apscheduler.jobstores.redis import RedisJobStore
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    job_store: Any
    if store == "memory":
        job_store = MemoryJobStore()
    else:
        url = urlparse(redis_url)
        job_store = RedisJobStore(
            host=url.hostname,
            port=url.port or 6379,
            db=int(url.path.strip("/") or 0),
            jobs_key=f"bench-aps-{os.getpid()}.jobs",
            run_times_key=f"bench-aps-{os.getpid()}.run_times",
        )
        job_store.remove_all_jobs()
    return AsyncIOScheduler(jobstores={"default": job_store}, timezone="UTC")


def drop(scheduler: Any) -> None:
    """Remove the jobs and shut down without waiting."""
    scheduler.remove_all_jobs()
    scheduler.shutdown(wait=False)
