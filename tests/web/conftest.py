"""Fixtures of the web tests: a SQLite store populated by a real scheduler, and the app over it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from backbeat import BackgroundTaskScheduler, SchedulerConfig
from backbeat.web import create_app
from tests.web.populate import Populated, populate

TOKEN = "s3cret-token"
FAST = SchedulerConfig(lease_seconds=2.0, poll_interval=0.2, shutdown_timeout=2.0)


@pytest.fixture
async def running(
    sqlite_url: str, record_file: Path
) -> AsyncIterator[tuple[BackgroundTaskScheduler, Populated]]:
    """A started scheduler on a fresh SQLite file, with :func:`populate`'s tasks."""
    scheduler = BackgroundTaskScheduler(store=sqlite_url, config=FAST)
    await scheduler.start_async()
    try:
        yield scheduler, await populate(scheduler, record_file)
    finally:
        await scheduler.stop_async(timeout=1.0)


@pytest.fixture
async def client(running: tuple[BackgroundTaskScheduler, Populated]) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of ``create_app(scheduler, token=TOKEN)``, in process."""
    app = create_app(running[0], token=TOKEN)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://backbeat.test") as client:
        yield client


@pytest.fixture
def populated_url(sqlite_url: str, record_file: Path) -> tuple[str, Populated]:
    """A SQLite store URL populated by a scheduler that has stopped (for sync tests and subprocesses)."""

    async def fill() -> Populated:
        scheduler = BackgroundTaskScheduler(store=sqlite_url, config=FAST)
        await scheduler.start_async()
        try:
            return await populate(scheduler, record_file)
        finally:
            await scheduler.stop_async(timeout=1.0)

    return sqlite_url, asyncio.run(fill())
