"""A store filled by a real scheduler for the CLI, API and browser tests: recurring, delayed and
paused tasks, one orphaned task and one dead letter."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

from backbeat import BackgroundTaskScheduler
from tests.integration import jobs, resilience_jobs


@dataclass(frozen=True)
class Populated:
    """The ids of what :func:`populate` stored."""

    daily: str
    cleanup: str
    reminder: str
    paused: str
    orphaned: str
    dead_letter: str


async def populate(scheduler: BackgroundTaskScheduler, record_file: Path) -> Populated:
    """Store tasks through ``scheduler`` (started, not producer-only) and wait for one dead letter."""
    path = str(record_file)
    daily = await scheduler.add_task(
        jobs.note, "0 8 * * *", args=[path, "daily"], id="daily-report", tags=["reports"]
    )
    cleanup = await scheduler.add_task(
        jobs.note, "interval", hours=1, args=[path], id="cleanup", tags=["maintenance"]
    )
    reminder = await scheduler.schedule_delayed_task(
        "order_reminder", jobs.note, delay_minutes=30, args=[path, "A-1"], tags=["order", "A-1"]
    )
    paused = await scheduler.add_task(
        jobs.note, "*/5 * * * *", args=[path], id="paused-report", tags=["reports"]
    )
    await scheduler.pause_task(paused)
    orphaned = await scheduler.add_task(
        jobs.note, "0 9 * * *", args=[path], id="renamed-job", tags=["legacy"]
    )
    await scheduler.store.update(orphaned, orphaned="job func:gone.module:job is not registered")
    failing = await scheduler.schedule_immediate_task(
        "charge_card", resilience_jobs.always_fails, args=[path], tags=["order", "A-2"]
    )
    deadline = time.monotonic() + 15
    while not await scheduler.list_dead_letters(failing):
        assert time.monotonic() < deadline, "the failing task was not dead-lettered"
        await asyncio.sleep(0.05)
    [letter] = await scheduler.list_dead_letters(failing)
    return Populated(daily, cleanup, reminder, paused, orphaned, letter.id)
