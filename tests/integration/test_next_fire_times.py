"""``scheduler.next_fire_times`` and ``backbeat tasks next``: a preview of a task's fire times,
on a SQLite file, with the scheduler's clock injected (a DST night ahead)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from backbeat import TaskNotFoundError
from tests.integration import jobs
from tests.integration.test_cli import cli, cli_json
from tests.scheduling import SchedulerFactory

NOW = datetime(2026, 10, 24, 12, 0, tzinfo=UTC)


async def test_the_next_fire_times_follow_the_trigger_and_its_dst_policy(
    make_scheduler: SchedulerFactory, sqlite_url: str
) -> None:
    scheduler = make_scheduler(sqlite_url, role="producer", clock=lambda: NOW)
    nightly = await scheduler.add_task(
        jobs.note, "cron", hour=2, minute=30, timezone="Europe/Berlin", dst={"repeated": "first"}, args=["x"]
    )
    twice = await scheduler.add_task(
        jobs.note, "cron", hour=2, minute=30, timezone="Europe/Berlin", args=["x"]
    )
    every = await scheduler.add_task(jobs.note, "interval", minutes=90, start_date=NOW, args=["x"])
    once = await scheduler.schedule_at("once", jobs.note, scheduled_time=NOW + timedelta(days=1), args=["x"])

    assert await scheduler.next_fire_times(nightly, 3) == [
        datetime(2026, 10, 25, 0, 30, tzinfo=UTC),  # 02:30 CEST, the first of the two
        datetime(2026, 10, 26, 1, 30, tzinfo=UTC),  # 02:30 CET
        datetime(2026, 10, 27, 1, 30, tzinfo=UTC),
    ]
    assert (await scheduler.next_fire_times(twice, 3))[:2] == [
        datetime(2026, 10, 25, 0, 30, tzinfo=UTC),
        datetime(2026, 10, 25, 1, 30, tzinfo=UTC),  # the default fires both
    ]
    assert await scheduler.next_fire_times(every, 3) == [NOW + timedelta(minutes=90 * k) for k in range(3)]
    assert await scheduler.next_fire_times(once, 10) == [NOW + timedelta(days=1)]
    with pytest.raises(TaskNotFoundError):
        await scheduler.next_fire_times("nope")
    with pytest.raises(ValueError, match="count must be an integer from 1 to 1000, not 0"):
        await scheduler.next_fire_times(nightly, 0)
    await scheduler.shutdown()

    shown = await cli_json("tasks", "next", nightly, "--store", sqlite_url, "--count", "2")
    assert shown["next_fire_times"] == ["2026-10-25T00:30:00+00:00", "2026-10-26T01:30:00+00:00"]
    code, out, _ = await cli("tasks", "next", nightly, "--store", sqlite_url, "--count", "2")
    assert code == 0 and "2026-10-25 02:30:00 CEST+0200" in out and "2026-10-26 02:30:00 CET+0100" in out
    code, _, err = await cli("tasks", "next", "nope", "--store", sqlite_url)
    assert code == 1 and "nope" in err
    code, _, err = await cli("tasks", "next", nightly, "--store", sqlite_url, "--count", "0")
    assert code == 2 and "--count must be from 1 to 1000" in err
