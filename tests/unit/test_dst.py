"""DST policies of cron triggers in a time zone, on the 2026 transition dates of Europe/Berlin
(29 March 02:00 → 03:00, 25 October 03:00 → 02:00) and America/New_York (8 March 02:00 →
03:00, 1 November 02:00 → 01:00). Every time is given (an injected clock), none is waited for."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from apscheduler.triggers.cron import CronTrigger
from tests.fakes import FakeClock

from backbeat import InvalidTriggerError, current_run
from backbeat.abc import Store
from backbeat.api.taskbuild import from_callable
from backbeat.engine.loop import Engine, EngineConfig
from backbeat.executors import AsyncIOExecutor
from backbeat.model import triggers
from backbeat.model.dst import Policy, WallCron
from backbeat.model.events import EventHub
from backbeat.model.records import TaskOptions
from backbeat.model.registry import JobRegistry
from backbeat.stores.memory import MemoryStore
from backbeat.stores.sqlite import SQLiteStore

BERLIN, NEW_YORK = "Europe/Berlin", "America/New_York"


def local(zone: str, text: str) -> str:
    """A fire time as the zone's clock shows it, with its offset: ``03-29 03:30+0200``."""
    return datetime.fromisoformat(text).astimezone(ZoneInfo(zone)).strftime("%m-%d %H:%M%z")


def fires(zone: str, since: str, until: str, dst: dict[str, str] | None, **cron: Any) -> list[str]:
    """Fire times from ``since`` to ``until`` (wall times of ``zone``), as :func:`local` shows them."""
    policy: dict[str, Any] = {"dst": dst} if dst else {}
    spec = triggers.make_trigger_spec("cron", timezone=zone, **policy, **cron)
    begin = datetime.fromisoformat(since).replace(tzinfo=ZoneInfo(zone)).astimezone(UTC)
    end = datetime.fromisoformat(until).replace(tzinfo=ZoneInfo(zone)).astimezone(UTC)
    found, shown = triggers.next_fire_time(spec, None, begin), []
    while found is not None and found <= end:
        shown.append(local(zone, found.isoformat()))
        found = triggers.next_fire_time(spec, found, begin)
    return shown


# -- a wall time that never occurs (spring) -------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "day", "offsets"),
    [(BERLIN, "03-29", ("+0100", "+0200")), (NEW_YORK, "03-08", ("-0500", "-0400"))],
)
def test_a_skipped_wall_time_is_left_out_or_shifted_by_the_jump(
    zone: str, day: str, offsets: tuple[str, str]
) -> None:
    before, after = offsets
    prev = f"{day[:3]}{int(day[3:]) - 1:02d}"
    nxt = f"{day[:3]}{int(day[3:]) + 1:02d}"
    window = (f"2026-{prev}T00:00", f"2026-{nxt}T23:59")
    skipped = fires(zone, *window, {"skipped": "skip"}, hour=2, minute=30)
    shifted = fires(zone, *window, {"skipped": "shift"}, hour=2, minute=30)
    assert skipped == [f"{prev} 02:30{before}", f"{nxt} 02:30{after}"]
    assert shifted == [f"{prev} 02:30{before}", f"{day} 03:30{after}", f"{nxt} 02:30{after}"]
    assert fires(zone, *window, None, hour=2, minute=30) == shifted  # the default


def test_a_shifted_wall_time_that_fires_anyway_fires_once() -> None:
    shown = fires(BERLIN, "2026-03-29T01:00", "2026-03-29T04:00", {"skipped": "shift"}, minute="15")
    assert shown == ["03-29 01:15+0100", "03-29 03:15+0200"]  # 02:15 shifted is 03:15


# -- a wall time that occurs twice (autumn) ------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "day", "hour", "offsets"),
    [(BERLIN, "10-25", 2, ("+0200", "+0100")), (NEW_YORK, "11-01", 1, ("-0400", "-0500"))],
)
def test_a_repeated_wall_time_fires_first_last_or_both(
    zone: str, day: str, hour: int, offsets: tuple[str, str]
) -> None:
    summer, winter = offsets
    window = (f"2026-{day}T00:00", f"2026-{day}T23:59")
    at = f"{day} {hour:02d}:30"
    assert fires(zone, *window, {"repeated": "first"}, hour=hour, minute=30) == [f"{at}{summer}"]
    assert fires(zone, *window, {"repeated": "last"}, hour=hour, minute=30) == [f"{at}{winter}"]
    both = [f"{at}{summer}", f"{at}{winter}"]
    assert fires(zone, *window, {"repeated": "both"}, hour=hour, minute=30) == both
    assert fires(zone, *window, None, hour=hour, minute=30) == both  # the default


def test_a_frequent_schedule_through_the_repeated_hour() -> None:
    window = ("2026-10-25T01:30", "2026-10-25T03:00")
    first = fires(BERLIN, *window, {"repeated": "first"}, minute="*/30")
    last = fires(BERLIN, *window, {"repeated": "last"}, minute="*/30")
    assert first == ["10-25 01:30+0200", "10-25 02:00+0200", "10-25 02:30+0200", "10-25 03:00+0100"]
    assert last == ["10-25 01:30+0200", "10-25 02:00+0100", "10-25 02:30+0100", "10-25 03:00+0100"]


# -- the walk agrees with APScheduler where the policy is APScheduler's ----------------------------


@pytest.mark.parametrize("zone", [BERLIN, NEW_YORK])
@pytest.mark.parametrize(
    "cron", [{"minute": "*/30"}, {"hour": "1-3", "minute": "0,30"}, {"hour": "2", "minute": "30"}]
)
def test_walking_wall_times_with_both_and_shift_matches_the_plain_trigger(
    zone: str, cron: dict[str, str]
) -> None:
    tz = ZoneInfo(zone)
    plain = CronTrigger(**cron, second="0", timezone=tz)
    wall = WallCron(
        CronTrigger(**cron, second="0", timezone=UTC), plain, tz, Policy("both", "shift"), None, None
    )
    for day in ("2026-03-07", "2026-03-28", "2026-10-24", "2026-10-31"):
        moment = datetime.fromisoformat(day).replace(tzinfo=tz).astimezone(UTC)
        for _ in range(60):
            expected = plain.get_next_fire_time(None, moment + timedelta(microseconds=1)).astimezone(UTC)
            assert wall._walk_after(moment) == expected
            moment = expected


def test_due_fire_times_follow_the_policy_across_a_missed_night() -> None:
    spec = triggers.make_trigger_spec("cron", hour=2, minute=30, timezone=NEW_YORK, dst={"skipped": "skip"})
    first = datetime(2026, 3, 7, 7, 30, tzinfo=UTC)  # 7 March 02:30 EST
    due, following = triggers.due_fire_times(spec, first, datetime(2026, 3, 9, 12, tzinfo=UTC))
    assert [local(NEW_YORK, t.isoformat()) for t in due] == ["03-07 02:30-0500", "03-09 02:30-0400"]
    assert following is not None and local(NEW_YORK, following.isoformat()) == "03-10 02:30-0400"


# -- the argument ---------------------------------------------------------------------------------


def test_the_policy_is_stored_whole_and_described() -> None:
    spec = triggers.make_trigger_spec("30 2 * * *", timezone=BERLIN, dst={"repeated": "first"})
    assert spec["dst"] == {"repeated": "first", "skipped": "shift"}
    assert triggers.describe(spec).endswith("(Europe/Berlin) dst[repeated=first, skipped=shift]")


@pytest.mark.parametrize(
    ("trigger", "args", "message"),
    [
        (
            "cron",
            {"hour": 2, "dst": {"repeated": "twice"}},
            "dst repeated='twice': expected one of first, last, both",
        ),
        (
            "cron",
            {"hour": 2, "dst": {"skipped": "later"}},
            "dst skipped='later': expected one of skip, shift",
        ),
        ("cron", {"hour": 2, "dst": {"gap": "skip"}}, "unknown dst key(s) 'gap'"),
        ("cron", {"hour": 2, "dst": "first"}, "dst must be a dict like"),
        (
            "interval",
            {"seconds": 5, "dst": {"repeated": "first"}},
            "unknown argument(s) for a interval trigger: dst",
        ),
    ],
)
def test_a_bad_policy_is_refused_naming_it(trigger: str, args: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidTriggerError, match=message.replace("(", r"\(").replace(")", r"\)")):
        triggers.make_trigger_spec(trigger, timezone=BERLIN, **args)


# -- an engine on a real store, its clock moved through the autumn night --------------------------


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    made: Store = MemoryStore() if request.param == "memory" else SQLiteStore(tmp_path / "dst.db")
    await made.open()
    yield made
    await made.close()


@pytest.mark.parametrize(("repeated", "expected"), [("first", 6), ("last", 6), ("both", 8)])
async def test_a_worker_runs_the_repeated_hour_as_the_policy_says(
    store: Store, repeated: str, expected: int
) -> None:
    start = datetime(2026, 10, 24, 23, 15, tzinfo=UTC)  # 25 October 01:15 CEST
    clock = FakeClock(start)
    registry = JobRegistry()
    ran: list[datetime] = []

    async def job() -> None:
        assert current_run().fire_time == clock.now  # run at its fire time, by the fake clock
        ran.append(current_run().fire_time)

    spec = triggers.make_trigger_spec(
        "cron", minute="*/30", timezone=BERLIN, dst={"repeated": repeated}, now=start
    )
    task = from_callable(
        registry, job, trigger=spec, options=TaskOptions(misfire_grace_time=None), task_id="night", now=start
    ).task
    await store.add([task])
    engine = Engine(
        store, registry, {"default": AsyncIOExecutor()}, EventHub(),
        EngineConfig(owner="w", lease=timedelta(seconds=30), claim_ahead=timedelta(0), history=None),
        clock=clock, sleep=clock.sleep,
    )  # fmt: skip
    for _ in range(2 * 4 * 60 // 15):  # four hours in steps of 7.5 minutes
        clock.advance(450)
        await engine._claim_once(10)
        async with asyncio.timeout(5):
            await asyncio.gather(*(t for _, t in engine._active.values()))
        await engine.completions.drain()

    shown = [local(BERLIN, t.isoformat()) for t in ran]
    assert len(shown) == len(set(shown)) == expected
    assert shown[0] == "10-25 01:30+0200"
    if repeated == "first":
        assert "10-25 02:00+0100" not in shown and "10-25 02:00+0200" in shown
    elif repeated == "last":
        assert "10-25 02:00+0200" not in shown and "10-25 02:00+0100" in shown
