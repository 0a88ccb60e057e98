"""Trigger specs: every accepted form, APScheduler parity, DST, drift, jitter, missed fires, errors."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
from apscheduler.triggers.calendarinterval import CalendarIntervalTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from backbeat.errors import InvalidTriggerError
from backbeat.model.triggers import (
    date_spec,
    describe,
    due_fire_times,
    is_one_shot,
    make_trigger_spec,
    next_fire_time,
    to_apscheduler,
)

PARIS = ZoneInfo("Europe/Paris")
NOW = datetime(2026, 1, 5, 9, 17, 23, tzinfo=UTC)  # a Monday


def aps_fires(trigger: Any, now: datetime, count: int) -> list[datetime]:
    """Fire times as APScheduler 3's scheduler loop computes them, in UTC.

    (Aware datetimes of different zones never compare equal inside a DST gap or fold, PEP 495.)
    """
    fires: list[datetime] = []
    previous = None
    while len(fires) < count:
        previous = trigger.get_next_fire_time(previous, now if previous is None else previous)
        if previous is None:
            break
        fires.append(previous.astimezone(UTC))
    return fires


def our_fires(spec: dict[str, Any], now: datetime, count: int) -> list[datetime]:
    fires: list[datetime] = []
    previous = None
    while len(fires) < count:
        previous = next_fire_time(spec, previous, now if previous is None else previous)
        if previous is None:
            break
        assert previous.tzinfo is UTC
        fires.append(previous)
    return fires


def assert_same_fires(spec: dict[str, Any], trigger: Any, now: datetime = NOW, count: int = 40) -> None:
    expected = aps_fires(trigger, now, count)
    assert expected, "the reference trigger never fires"
    assert our_fires(spec, now, count) == expected
    assert aps_fires(to_apscheduler(spec), now, count) == expected
    reloaded = orjson.loads(orjson.dumps(spec))
    assert reloaded == spec
    assert our_fires(reloaded, now, count) == expected


# -- every accepted form gives APScheduler's fire times ----------------------------------------

APSCHEDULER_OBJECTS = [
    CronTrigger(hour="8", minute="30", day_of_week="mon-fri", timezone="Europe/Paris"),
    CronTrigger(hour=8, timezone=PARIS),
    CronTrigger(hour="8", minute="*", second="*/20", timezone="UTC"),
    CronTrigger(day="last", month="2,3", hour=23, minute=59, timezone="America/New_York"),
    CronTrigger(
        day="2nd wed", hour="6", timezone="Asia/Kolkata", start_date=NOW, end_date=NOW + timedelta(days=300)
    ),
    CronTrigger(week="*/2", day_of_week="sun", timezone=UTC, jitter=None),
    CronTrigger.from_crontab("*/10 2 * * 1", timezone="Europe/Paris"),
    IntervalTrigger(hours=2, minutes=30, start_date=NOW - timedelta(days=3), timezone=PARIS),
    IntervalTrigger(
        seconds=45, start_date=NOW + timedelta(hours=1), end_date=NOW + timedelta(hours=2), timezone="UTC"
    ),
    DateTrigger(run_date=datetime(2026, 6, 1, 8, 0), timezone="Europe/Paris"),
    CalendarIntervalTrigger(months=1, hour=8, start_date=date(2026, 1, 31), timezone="Europe/Paris"),
    CalendarIntervalTrigger(
        years=1, weeks=1, days=2, hour=2, minute=30, start_date="2026-03-29", timezone=PARIS
    ),
]


@pytest.mark.parametrize("trigger", APSCHEDULER_OBJECTS, ids=repr)
def test_apscheduler_objects_round_trip(trigger: Any) -> None:
    spec = make_trigger_spec(trigger)
    assert_same_fires(spec, trigger)
    assert make_trigger_spec(to_apscheduler(spec)) == spec
    if isinstance(trigger, CronTrigger):
        assert [str(f) for f in to_apscheduler(spec).fields] == [str(f) for f in trigger.fields]


@pytest.mark.parametrize(
    ("kwargs", "reference"),
    [
        (
            {"trigger": "cron", "hour": 8, "minute": "15,45"},
            CronTrigger(hour=8, minute="15,45", timezone="UTC"),
        ),
        (
            {
                "trigger": "cron",
                "day_of_week": "0",
                "hour": "12",
                "timezone": "Europe/Paris",
            },  # APScheduler: 0 = Monday
            CronTrigger(day_of_week="0", hour="12", timezone="Europe/Paris"),
        ),
        (
            {"trigger": "cron", "year": "2026-2027", "month": "jan-mar", "day": "1-7", "second": "5"},
            CronTrigger(year="2026-2027", month="jan-mar", day="1-7", second="5", timezone="UTC"),
        ),
        (
            {
                "trigger": "cron",
                "minute": "*/7",
                "start_date": "2026-01-10T00:00:00+01:00",
                "end_date": NOW + timedelta(days=30),
            },
            CronTrigger(
                minute="*/7",
                start_date=datetime(2026, 1, 10, tzinfo=timezone(timedelta(hours=1))),
                end_date=NOW + timedelta(days=30),
                timezone="UTC",
            ),
        ),
        ({"trigger": "cron", "cron": "0 8 * * *"}, CronTrigger(minute="0", hour="8", timezone="UTC")),
        (
            {"cron": "30 6 1 */2 *", "timezone": PARIS},
            CronTrigger(minute="30", hour="6", day="1", month="*/2", timezone=PARIS),
        ),
        (
            {"trigger": "0 8 * * 1-5", "timezone": "Europe/Paris"},
            CronTrigger(minute="0", hour="8", day_of_week="mon-fri", timezone="Europe/Paris"),
        ),
        ({"trigger": "@hourly"}, CronTrigger(minute="0", timezone="UTC")),
        (
            {"trigger": "@daily", "timezone": "America/New_York"},
            CronTrigger(hour="0", timezone="America/New_York"),
        ),
        ({"trigger": "@monthly"}, CronTrigger(day="1", timezone="UTC")),
        ({"trigger": "@yearly"}, CronTrigger(month="1", timezone="UTC")),
        (
            {"trigger": "interval", "hours": 1, "minutes": 30, "start_date": datetime(2026, 1, 1, 0, 0)},
            IntervalTrigger(hours=1, minutes=30, start_date=datetime(2026, 1, 1, tzinfo=UTC), timezone="UTC"),
        ),
        (
            {
                "interval": timedelta(days=1),
                "start_date": datetime(2026, 1, 1, 2, 30),
                "timezone": "Europe/Paris",
            },
            IntervalTrigger(days=1, start_date=datetime(2026, 1, 1, 2, 30), timezone="Europe/Paris"),
        ),
        (
            {"interval": 2.5, "start_date": NOW, "end_date": NOW + timedelta(seconds=60)},
            IntervalTrigger(
                seconds=2.5, start_date=NOW, end_date=NOW + timedelta(seconds=60), timezone="UTC"
            ),
        ),
        ({"trigger": "date", "run_date": "2026-02-01T08:00:00+01:00"}, DateTrigger("2026-02-01 07:00:00Z")),
        (
            {"run_date": datetime(2026, 7, 1, 8, 0), "timezone": "Europe/Paris"},
            DateTrigger(datetime(2026, 7, 1, 8, 0), timezone="Europe/Paris"),
        ),
        (
            {"trigger": "date", "run_date": NOW - timedelta(days=1)},
            DateTrigger(NOW - timedelta(days=1), timezone="UTC"),
        ),
        (
            {
                "trigger": "calendarinterval",
                "months": 2,
                "hour": 9,
                "start_date": "2026-01-31",
                "timezone": PARIS,
            },
            CalendarIntervalTrigger(months=2, hour=9, start_date=date(2026, 1, 31), timezone=PARIS),
        ),
        (
            {
                "trigger": "calendarinterval",
                "days": 3,
                "minute": 5,
                "start_date": date(2026, 2, 1),
                "end_date": "2026-03-01",
            },
            CalendarIntervalTrigger(
                days=3, minute=5, start_date="2026-02-01", end_date="2026-03-01", timezone="UTC"
            ),
        ),
    ],
)
def test_keyword_and_string_forms_match_apscheduler(kwargs: dict[str, Any], reference: Any) -> None:
    args = dict(kwargs)
    spec = make_trigger_spec(args.pop("trigger", None), now=NOW, **args)
    assert_same_fires(spec, reference)


def test_spec_dict_is_validated_and_copied() -> None:
    spec = make_trigger_spec(
        "cron", hour="8", day_of_week="mon-fri", jitter=5, end_date=NOW + timedelta(days=9)
    )
    again = make_trigger_spec(spec, now=NOW + timedelta(days=3))
    assert again == spec
    assert again is not spec
    hand_written = {
        "type": "interval",
        "seconds": 60,
        "start_date": "2026-01-01T00:00:00Z",
        "timezone": "UTC",
    }
    assert make_trigger_spec(hand_written) == {**hand_written, "start_date": "2026-01-01T00:00:00+00:00"}
    assert make_trigger_spec({"type": "cron", "minute": 5}, timezone="Europe/Paris") == {
        "type": "cron",
        "minute": "5",
        "second": "0",
        "timezone": "Europe/Paris",
    }


def test_interval_spec_keeps_seconds_for_recurrent_jobs() -> None:
    assert make_trigger_spec("interval", seconds=30, now=NOW)["seconds"] == 30
    assert make_trigger_spec("interval", minutes=1.5, now=NOW)["seconds"] == 90
    assert make_trigger_spec("interval", seconds=0.25, now=NOW)["seconds"] == 0.25


# -- crontab day-of-week semantics ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("day_of_week", "weekdays"),  # Python weekday(): 0 = Monday, 6 = Sunday
    [
        ("0", {6}),
        ("7", {6}),
        ("1", {0}),
        ("6", {5}),
        ("sun", {6}),
        ("MON", {0}),
        ("1-5", {0, 1, 2, 3, 4}),
        ("mon-fri", {0, 1, 2, 3, 4}),
        ("5-7", {4, 5, 6}),
        ("0,3", {6, 2}),
        ("*/2", {6, 1, 3, 5}),
        ("1-7/3", {0, 3, 6}),
        ("sat,0", {5, 6}),
    ],
)
def test_crontab_day_of_week_is_standard_cron(day_of_week: str, weekdays: set[int]) -> None:
    spec = make_trigger_spec(f"0 8 * * {day_of_week}")
    fires = our_fires(spec, NOW, 21)
    assert {fire.weekday() for fire in fires} == weekdays
    assert all(fire.hour == 8 and fire.minute == 0 for fire in fires)


def test_crontab_sunday_every_minute() -> None:
    spec = make_trigger_spec("* * * * 0", now=NOW)
    first = next_fire_time(spec, None, NOW)
    assert first == datetime(2026, 1, 11, 0, 0, tzinfo=UTC)
    assert next_fire_time(spec, first, first) == first + timedelta(minutes=1)


def test_apscheduler_keywords_keep_apscheduler_weekdays() -> None:
    spec = make_trigger_spec("cron", day_of_week="1", hour="8")
    assert {fire.weekday() for fire in our_fires(spec, NOW, 5)} == {1}  # APScheduler: 1 = Tuesday


# -- daylight saving time ------------------------------------------------------------------------


@pytest.mark.parametrize("night", [datetime(2026, 3, 27, tzinfo=UTC), datetime(2026, 10, 23, tzinfo=UTC)])
@pytest.mark.parametrize("form", ["crontab", "keywords"])
def test_cron_across_dst_matches_apscheduler(night: datetime, form: str) -> None:
    if form == "crontab":
        spec = make_trigger_spec("30 2 * * *", timezone="Europe/Paris")
    else:
        spec = make_trigger_spec("cron", hour=2, minute=30, timezone=PARIS)
    reference = CronTrigger(hour=2, minute=30, timezone=PARIS)
    assert_same_fires(spec, reference, now=night, count=6)
    local = [fire.astimezone(PARIS) for fire in our_fires(spec, night, 6)]
    assert all((t.hour, t.minute) in {(2, 30), (3, 30), (3, 0)} for t in local)


def test_due_fire_times_across_fall_back_fires_both_half_past_twos() -> None:
    spec = make_trigger_spec("30 2 * * *", timezone="Europe/Paris")
    night = datetime(2026, 10, 24, tzinfo=UTC)
    expected = aps_fires(CronTrigger(hour=2, minute=30, timezone=PARIS), night, 4)
    assert expected[1:3] == [
        datetime(2026, 10, 25, 0, 30, tzinfo=UTC),
        datetime(2026, 10, 25, 1, 30, tzinfo=UTC),
    ]
    due, following = due_fire_times(spec, expected[0], datetime(2026, 10, 26, 12, 0, tzinfo=UTC))
    assert due == expected
    assert following == datetime(2026, 10, 27, 1, 30, tzinfo=UTC)


def test_interval_across_dst_is_absolute_time() -> None:
    spec = make_trigger_spec(
        "interval", hours=1, start_date=datetime(2026, 3, 29, 0, 0), timezone="Europe/Paris"
    )
    fires = our_fires(spec, datetime(2026, 3, 28, 22, 0, tzinfo=UTC), 5)
    assert [b - a for a, b in itertools.pairwise(fires)] == [timedelta(hours=1)] * 4
    assert_same_fires(
        spec, IntervalTrigger(hours=1, start_date=datetime(2026, 3, 29), timezone="Europe/Paris")
    )


# -- no drift ------------------------------------------------------------------------------------


def test_interval_spec_rebuilt_later_does_not_drift() -> None:
    spec = make_trigger_spec("interval", minutes=5, now=NOW)
    assert datetime.fromisoformat(spec["start_date"]) == NOW + timedelta(minutes=5)
    reference = IntervalTrigger(minutes=5, start_date=NOW + timedelta(minutes=5), timezone="UTC")
    later = NOW + timedelta(hours=1, seconds=1)
    stored = orjson.loads(orjson.dumps(spec))
    assert our_fires(stored, later, 10) == aps_fires(reference, later, 10)
    assert next_fire_time(stored, None, later) == NOW + timedelta(minutes=65)
    assert make_trigger_spec(stored, now=later) == spec
    assert make_trigger_spec(to_apscheduler(stored), now=later) == spec


def test_calendar_interval_start_date_is_materialized_in_its_timezone() -> None:
    late_evening = datetime(2026, 1, 5, 23, 30, tzinfo=UTC)  # already Jan 6 in Paris
    spec = make_trigger_spec("calendarinterval", days=1, hour=8, timezone=PARIS, now=late_evening)
    assert spec["start_date"] == "2026-01-06"
    assert make_trigger_spec(spec, now=late_evening + timedelta(days=10)) == spec


def test_calendar_interval_without_previous_skips_to_now() -> None:
    spec = make_trigger_spec("calendarinterval", days=1, hour=8, start_date="2026-01-01")
    assert next_fire_time(spec, None, NOW) == datetime(2026, 1, 6, 8, 0, tzinfo=UTC)
    assert next_fire_time(spec, None, datetime(2025, 1, 1, tzinfo=UTC)) == datetime(2026, 1, 1, 8, tzinfo=UTC)


# -- jitter --------------------------------------------------------------------------------------


def test_cron_jitter_stays_within_bounds() -> None:
    spec = make_trigger_spec("cron", minute="0", jitter=30)
    assert spec["jitter"] == 30
    assert isinstance(to_apscheduler(spec), CronTrigger)
    assert to_apscheduler(spec).jitter == 30
    slot = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
    for _ in range(200):
        fire = next_fire_time(spec, None, NOW)
        assert fire is not None
        assert slot <= fire <= slot + timedelta(seconds=30)
        due, following = due_fire_times(spec, fire, fire + timedelta(minutes=1))
        assert due == [fire]
        assert following is not None
        assert slot + timedelta(hours=1) <= following <= slot + timedelta(hours=1, seconds=30)


def test_interval_jitter_does_not_accumulate() -> None:
    spec = make_trigger_spec("interval", minutes=1, jitter=20, start_date=NOW)
    previous = next_fire_time(spec, None, NOW)
    assert previous is not None
    assert NOW <= previous <= NOW + timedelta(seconds=20)
    for k in range(1, 300):
        fire = next_fire_time(spec, previous, previous)
        assert fire is not None
        slot = NOW + timedelta(minutes=k)
        assert slot <= fire <= slot + timedelta(seconds=20)
        previous = fire


def test_jitter_never_passes_end_date() -> None:
    end = NOW + timedelta(minutes=10)
    spec = make_trigger_spec("interval", minutes=10, jitter=3600, start_date=NOW, end_date=end)
    for _ in range(50):
        assert next_fire_time(spec, None, NOW + timedelta(minutes=5)) == end
    assert next_fire_time(spec, end, end) is None


# -- due fire times ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec",
    [
        make_trigger_spec("cron", minute="*/10"),
        make_trigger_spec("*/10 * * * *"),
        make_trigger_spec("interval", minutes=10, start_date=datetime(2026, 1, 1)),
    ],
)
def test_three_missed_fires(spec: dict[str, Any]) -> None:
    first = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    due, following = due_fire_times(spec, first, first + timedelta(minutes=25))
    assert due == [first, first + timedelta(minutes=10), first + timedelta(minutes=20)]
    assert following == first + timedelta(minutes=30)
    assert due_fire_times(spec, first, first) == ([first], first + timedelta(minutes=10))
    assert due_fire_times(spec, first, first - timedelta(seconds=1)) == ([], first)
    assert due_fire_times(spec, first, first + timedelta(minutes=25), limit=2) == (due[1:], following)


@pytest.mark.parametrize(
    "spec",
    [
        make_trigger_spec("interval", seconds=1, start_date=datetime(2026, 1, 1)),
        make_trigger_spec("cron", second="*"),
    ],
)
def test_a_million_missed_fires_are_skipped(spec: dict[str, Any]) -> None:
    first = datetime(2026, 1, 1, tzinfo=UTC)
    now = first + timedelta(seconds=1_000_000, microseconds=500)
    due, following = due_fire_times(spec, first, now)
    last = first + timedelta(seconds=1_000_000)
    assert len(due) == 1000
    assert due[-1] == last
    assert due == [last - timedelta(seconds=999 - i) for i in range(1000)]
    assert following == last + timedelta(seconds=1)


def test_missed_fires_with_uneven_density() -> None:
    spec = make_trigger_spec("cron", month="1", hour="*", minute="*", second="*")  # every second of January
    first = datetime(2020, 1, 1, tzinfo=UTC)
    due, following = due_fire_times(spec, first, datetime(2025, 6, 1, tzinfo=UTC), limit=100)
    end_of_january = datetime(2025, 1, 31, 23, 59, 59, tzinfo=UTC)
    assert due == [end_of_january - timedelta(seconds=99 - i) for i in range(100)]
    assert following == datetime(2026, 1, 1, tzinfo=UTC)


def test_due_fire_times_stops_at_end_date() -> None:
    spec = make_trigger_spec("interval", minutes=1, start_date=NOW, end_date=NOW + timedelta(minutes=2))
    due, following = due_fire_times(spec, NOW, NOW + timedelta(hours=1))
    assert due == [NOW, NOW + timedelta(minutes=1), NOW + timedelta(minutes=2)]
    assert following is None
    cron = make_trigger_spec("cron", minute="*", end_date=NOW + timedelta(minutes=2))
    start = datetime(2026, 1, 5, 9, 18, tzinfo=UTC)
    assert due_fire_times(cron, start, NOW + timedelta(hours=1)) == (
        [start, start + timedelta(minutes=1)],
        None,
    )


def test_due_fire_times_for_date_and_calendar_triggers() -> None:
    run_date = NOW - timedelta(days=2)
    date_spec = make_trigger_spec(run_date=run_date)
    assert due_fire_times(date_spec, run_date, NOW) == ([run_date], None)
    calendar = make_trigger_spec("calendarinterval", days=1, hour=8, start_date="2026-01-01", timezone=PARIS)
    first = datetime(2026, 1, 1, 7, 0, tzinfo=UTC)
    due, following = due_fire_times(calendar, first, NOW)
    assert due == [first + timedelta(days=d) for d in range(5)]
    assert following == datetime(2026, 1, 6, 7, 0, tzinfo=UTC)


# -- timezones -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tz", "name"),
    [
        ("Europe/Paris", "Europe/Paris"),
        (PARIS, "Europe/Paris"),
        (UTC, "UTC"),
        (ZoneInfo("UTC"), "UTC"),
        (timezone(timedelta(hours=5, minutes=30)), "+05:30"),
        (timezone(timedelta(hours=-3)), "-03:00"),
        ("+00:00", "UTC"),
    ],
)
def test_timezones_are_stored_by_name(tz: Any, name: str) -> None:
    spec = make_trigger_spec("0 8 * * *", timezone=tz)
    assert spec["timezone"] == name
    fire = next_fire_time(spec, None, NOW)
    assert fire is not None
    assert fire.astimezone(tz if not isinstance(tz, str) else _zone_of(name)).hour == 8


def _zone_of(name: str) -> Any:
    return UTC if name == "UTC" else ZoneInfo(name)


def test_default_timezone_applies_and_is_never_local() -> None:
    assert make_trigger_spec("0 8 * * *")["timezone"] == "UTC"
    assert make_trigger_spec("0 8 * * *", default_timezone="Asia/Tokyo")["timezone"] == "Asia/Tokyo"
    assert make_trigger_spec("0 8 * * *", timezone="Europe/Paris", default_timezone="Asia/Tokyo")[
        "timezone"
    ] == ("Europe/Paris")
    naive = make_trigger_spec(run_date=datetime(2026, 1, 1, 8), default_timezone="Asia/Tokyo")
    assert naive["run_date"] == "2026-01-01T08:00:00+09:00"


# -- describe, is_one_shot, caching --------------------------------------------------------------


def test_describe() -> None:
    assert describe(make_trigger_spec("0 8 * * *")) == "cron[hour='8', minute='0'] (UTC)"
    assert describe(make_trigger_spec("0 8 * * 1-5", timezone=PARIS)) == (
        "cron[day_of_week='mon-fri', hour='8', minute='0'] (Europe/Paris)"
    )
    assert describe(make_trigger_spec("cron", second="*/5")) == "cron[second='*/5'] (UTC)"
    assert describe(make_trigger_spec("interval", minutes=5, now=NOW)) == "interval[0:05:00]"
    assert describe(make_trigger_spec(run_date="2026-01-01T08:00:00Z")) == "date[2026-01-01 08:00:00+00:00]"
    calendar = make_trigger_spec("calendarinterval", months=1, hour=8, now=NOW, jitter=10)
    assert describe(calendar) == "calendarinterval[months=1, at 08:00:00] (UTC) with jitter 10s"


def test_is_one_shot() -> None:
    assert is_one_shot(make_trigger_spec(run_date=NOW))
    assert not is_one_shot(make_trigger_spec("@daily"))
    assert not is_one_shot(make_trigger_spec(interval=60, now=NOW))


def test_to_apscheduler_caches_by_content() -> None:
    spec = make_trigger_spec("0 8 * * *")
    assert to_apscheduler(spec) is to_apscheduler(dict(reversed(list(spec.items()))))
    changed = {**spec, "hour": "9"}
    assert to_apscheduler(changed) is not to_apscheduler(spec)
    assert next_fire_time(changed, None, NOW) == datetime(2026, 1, 6, 9, 0, tzinfo=UTC)


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        next_fire_time(make_trigger_spec("@daily"), None, datetime(2026, 1, 1))


# -- invalid input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("trigger", "kwargs", "message"),
    [
        ("61 * * * *", {}, "invalid cron expression '61 * * * *': minute value 61 is out of range 0-59"),
        ("* * *", {}, "invalid cron expression '* * *': expected 5 fields"),
        ("* * * * * *", {}, "expected 5 fields"),
        ("0 25 * * *", {}, "hour value 25 is out of range 0-23"),
        ("0 8 * * 8", {}, "day_of_week value 8 is out of range 0-7"),
        ("0 8 * * fry", {}, "'0 8 * * fry': day_of_week field 'fry'"),
        ("0 8 32 * *", {}, "day value 32 is out of range 1-31"),
        ("@reboot", {}, "unknown crontab alias '@reboot'"),
        (None, {"cron": 5}, "cron must be a crontab string"),
        ("cron", {"hour": "24"}, "hour value 24 is out of range 0-23"),
        ("cron", {"minute": "*/61"}, "minute field '*/61'"),
        ("cron", {"hours": 3}, "unknown argument(s) for a cron trigger: hours"),
        ("cron", {"hour": [1, 2]}, "hour must be an int or a string"),
        ("cron", {"cron": "0 8 * * *", "hour": 3}, "cannot be combined with hour"),
        ("interval", {"minutes": -5}, "minutes must be a non-negative number, got -5"),
        ("interval", {"seconds": 0}, "interval must be positive"),
        ("interval", {}, "interval must be positive"),
        (None, {"interval": -1}, "interval must be a non-negative number"),
        (None, {"interval": "60"}, "interval must be a non-negative number"),
        ("interval", {"interval": 5, "seconds": 5}, "interval= cannot be combined with seconds"),
        ("interval", {"minutes": 1, "run_date": NOW}, "unknown argument(s) for a interval trigger: run_date"),
        ("interval", {"seconds": 5, "jitter": -1}, "jitter must be a non-negative number"),
        (
            "interval",
            {"seconds": 5, "start_date": "2026-01-02T00:00:00Z", "end_date": "2026-01-01T00:00:00Z"},
            "end_date 2026-01-01T00:00:00+00:00 is before start_date 2026-01-02T00:00:00+00:00",
        ),
        ("cron", {"start_date": NOW, "end_date": NOW - timedelta(seconds=1)}, "is before start_date"),
        (
            "calendarinterval",
            {"days": 1, "start_date": "2026-02-01", "end_date": "2026-01-01"},
            "end_date cannot be earlier than start_date",
        ),
        ("calendarinterval", {"hour": 8}, "interval must be at least 1 day long"),
        ("calendarinterval", {"days": 1, "hour": 24}, "hour must be in 0..23"),
        ("calendarinterval", {"days": 1, "start_date": NOW}, "start_date must be a date"),
        (
            "calendarinterval",
            {"days": 1, "start_date": "01/02/2026"},
            "start_date '01/02/2026' is not an ISO-8601 date",
        ),
        ("date", {"run_date": "2026-01-01T08:00:00"}, "run_date '2026-01-01T08:00:00' has no UTC offset"),
        ("date", {"run_date": "2026-01-01"}, "run_date '2026-01-01' has no UTC offset"),
        ("date", {"run_date": "next tuesday"}, "run_date 'next tuesday' is not an ISO-8601 datetime"),
        ("date", {"run_date": 1767225600}, "run_date must be a datetime"),
        ("cron", {"start_date": "yesterday"}, "start_date 'yesterday' is not an ISO-8601 datetime"),
        ("weekly", {}, "unknown trigger 'weekly'"),
        (42, {}, "unsupported trigger 42"),
        (None, {}, "no trigger given"),
        (None, {"hours": 1}, "no trigger given"),
        ("0 8 * * *", {"timezone": "Mars/Olympus"}, "unknown timezone 'Mars/Olympus'"),
        ({"type": "hourly"}, {}, "unknown trigger type 'hourly'"),
        ({"hour": "8"}, {}, "unknown trigger type None"),
        ({"type": "cron", "hour": "8", "color": "red"}, {}, "unknown argument(s) for a cron trigger: color"),
        ({"type": "date", "run_date": "2026-01-01T08:00:00", "timezone": "UTC"}, {}, "has no UTC offset"),
        (CronTrigger(hour=8, timezone="UTC"), {"minute": 5}, "takes no other arguments"),
    ],
)
def test_invalid_input_names_the_problem(trigger: Any, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidTriggerError) as caught:
        make_trigger_spec(trigger, now=NOW, **kwargs)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"type": "interval", "seconds": 60, "timezone": "UTC"}, "interval trigger spec has no start_date"),
        ({"type": "date", "timezone": "UTC"}, "date trigger spec has no run_date"),
        ({"type": "cron", "minute": "99", "timezone": "UTC"}, "minute value 99 is out of range 0-59"),
        ({"type": "cron", "minute": "0", "timezone": "Nowhere/Land"}, "unknown timezone 'Nowhere/Land'"),
        ({"type": "cron", "minute": object()}, "trigger spec is not JSON"),
    ],
)
def test_invalid_stored_specs_raise(spec: dict[str, Any], message: str) -> None:
    for call in (to_apscheduler, describe, lambda s: next_fire_time(s, None, NOW)):
        with pytest.raises(InvalidTriggerError) as caught:
            call(spec)
        assert message in str(caught.value)


DATE_CASES = [
    (datetime(2026, 3, 1, 8, 30, 0, 123456, tzinfo=UTC), "UTC"),
    (datetime(2026, 3, 1, 8, 30, 0, 5, tzinfo=UTC), "UTC"),  # the same second, spelled from its cache
    (datetime(1969, 7, 20, 20, 17, 40, 5, tzinfo=UTC), "UTC"),  # before the epoch
    (datetime(2026, 3, 1, 8, 30, tzinfo=UTC), "Europe/Paris"),
    (datetime(2026, 3, 1, 8, 30, tzinfo=PARIS), "UTC"),
    (datetime(2026, 3, 1, 8, 30, tzinfo=timezone(timedelta(hours=-3))), "America/New_York"),
    (datetime(2026, 3, 1, 8, 30), "UTC"),  # naive: in the timezone
    (datetime(2026, 10, 25, 2, 30), "Europe/Paris"),  # naive, in the repeated hour
    (datetime(2026, 10, 25, 2, 30, fold=1), "Europe/Paris"),
    (datetime(2026, 3, 29, 2, 30), "Europe/Paris"),  # naive, in the skipped hour
    (datetime(2026, 3, 1, 8, 30), "+05:30"),
    (datetime(2020, 1, 1, tzinfo=UTC), "UTC"),  # in the past: still its one fire time
]


@pytest.mark.parametrize(("run_date", "zone"), DATE_CASES)
def test_a_date_spec_made_directly_is_the_general_paths_spec_and_fire_time(
    run_date: datetime, zone: str
) -> None:
    made = date_spec(run_date, zone)
    assert made is not None
    spec, first = made
    assert spec == make_trigger_spec("date", run_date=run_date, default_timezone=zone, now=NOW)
    assert first == next_fire_time(spec, None, NOW)
    assert first.tzinfo is UTC and first.fold == 0


@pytest.mark.parametrize(
    ("run_date", "zone"),
    [
        ("2026-03-01T08:30:00+00:00", "UTC"),  # a string: parsed by the general path
        (datetime(2026, 3, 1, 8, 30), "+5:30"),  # stored spelled "+05:30"
        (datetime(2026, 3, 1, 8, 30), "Mars/Olympus"),  # refused by the general path
    ],
)
def test_a_date_spec_that_needs_the_general_path_is_not_made_directly(run_date: Any, zone: str) -> None:
    assert date_spec(run_date, zone) is None


def test_a_one_shot_is_due_once_at_its_time_in_any_zone_and_an_odd_spec_still_gets_checked() -> None:
    for offset in range(3):  # one-shots at times of their own
        at = NOW + timedelta(seconds=offset)
        spec = make_trigger_spec("date", run_date=at)
        assert spec.keys() == {"type", "run_date", "timezone"}  # the form stored, read without compiling
        berlin = at.astimezone(ZoneInfo("Europe/Berlin"))
        assert due_fire_times(spec, berlin, at + timedelta(seconds=1)) == ([at], None)
        assert due_fire_times(spec, at, at) == ([at], None)
        assert due_fire_times(spec, at, at - timedelta(microseconds=1)) == ([], at)
    with pytest.raises(ValueError, match="first"):
        due_fire_times(spec, NOW.replace(tzinfo=None), NOW)
    with pytest.raises(InvalidTriggerError):
        due_fire_times({"type": "date", "run_date": "soon", "jitter": 1}, NOW, NOW)
