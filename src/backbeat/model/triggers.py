"""Trigger specs: JSON dicts saying when a task fires, computed with APScheduler 3's triggers.

``{"type": "cron", "hour": "8", "minute": "0", "second": "0", "timezone": "Europe/Paris"}`` (with an
optional ``"dst": {"repeated": ..., "skipped": ...}``, see :mod:`backbeat.model.dst`),
``{"type": "interval", "seconds": 300, "start_date": "2026-01-01T08:05:00+00:00", "timezone": "UTC"}``,
``{"type": "date", "run_date": ...}``, ``{"type": "calendarinterval", "months": 1, ...}``. Datetimes are
ISO-8601 strings with an offset (naive strings are refused), dates ISO dates, timezones IANA names or
fixed offsets ("+02:00"). Cron fields keep APScheduler's keyword semantics (``day_of_week`` 0 = Monday);
crontab strings follow cron (0 and 7 = Sunday) and are stored as weekday names. As in APScheduler (not
cron), a crontab restricting both day and day_of_week fires only when both match.
"""

from __future__ import annotations

import random
import sys
from datetime import UTC, datetime, timedelta, tzinfo
from functools import lru_cache
from typing import Any, NamedTuple

import orjson
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.calendarinterval import CalendarIntervalTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from backbeat.errors import InvalidTriggerError
from backbeat.model.dst import DEFAULT, Policy, WallCron
from backbeat.model.instants import iso_us, to_us
from backbeat.model.trigger_specs import (
    CALENDAR_FIELDS,
    CRON_FIELDS,
    EXTRAS,
    aware,
    from_apscheduler,
    from_arguments,
    normalize,
    zone_of,
)
from backbeat.model.trigger_specs import TriggerSpec as TriggerSpec

_TICK = timedelta(microseconds=1)


def make_trigger_spec(
    trigger: object | None = None,
    *,
    timezone: str | tzinfo | None = None,
    default_timezone: str = "UTC",
    now: datetime | None = None,
    **kwargs: Any,
) -> TriggerSpec:
    """Build a validated, normalized trigger spec.

    Args:
        trigger: an APScheduler 3 trigger; a crontab string (``"0 8 * * 1"``, ``"@daily"``); ``"cron"``,
            ``"interval"``, ``"date"`` or ``"calendarinterval"`` with APScheduler's keyword arguments in
            ``kwargs``; a spec dict; or ``None`` with ``cron=``, ``interval=`` or ``run_date=``.
        timezone: the trigger's timezone (IANA name or tzinfo); naive datetimes are in it.
        default_timezone: the timezone when neither ``timezone`` nor a spec dict gives one.
        now: the current time (default: now), which fills in a missing start date or run date.
        **kwargs: the trigger's arguments.

    Raises:
        InvalidTriggerError: the trigger or an argument is invalid; the message names it.
    """
    now = aware(now, "now") if now is not None else datetime.now(UTC)
    if isinstance(trigger, BaseTrigger):
        if kwargs or timezone:
            raise InvalidTriggerError(f"an APScheduler trigger takes no other arguments, got {[*kwargs]}")
        return normalize(from_apscheduler(trigger), default_timezone, now)
    if isinstance(trigger, dict):
        if kwargs:
            raise InvalidTriggerError(f"a trigger spec dict takes no other arguments, got {[*kwargs]}")
        return normalize(trigger, timezone or default_timezone, now)
    return normalize(from_arguments(trigger, kwargs), timezone or default_timezone, now)


def date_spec(run_date: datetime, timezone: str) -> tuple[TriggerSpec, datetime] | None:
    """``make_trigger_spec("date", run_date=run_date, default_timezone=timezone)`` and its fire
    time (UTC), without the general path's argument checks and compiled trigger: the trigger of
    nearly every one-shot add. ``None`` when ``run_date`` is not a plain ``datetime`` or
    ``timezone`` is not stored as it is spelled (e.g. ``"+5:30"``): use the general path then.
    A naive ``run_date`` is in ``timezone``, as there.
    """
    if type(run_date) is not datetime or _stored_zone(timezone) is None:
        return None
    zone = zone_of(timezone)
    if run_date.tzinfo is None:
        run_date = run_date.replace(tzinfo=zone)
    elif run_date.utcoffset() is None:
        return None
    first = run_date.astimezone(UTC)
    # in UTC spelled from the second's cached text: isoformat() was a fifth of a one-shot's build
    text = iso_us(to_us(first)) if zone is UTC else run_date.astimezone(zone).isoformat()
    return {"type": "date", "run_date": text, "timezone": timezone}, first


@lru_cache(maxsize=64)
def _stored_zone(timezone: str) -> str | None:
    """``timezone`` if a spec stores it as spelled, else ``None`` (an invalid name too)."""
    try:
        stored = normalize({"type": "date", "run_date": "2000-01-01T00:00:00+00:00"}, timezone, None)
    except InvalidTriggerError:
        return None
    return timezone if stored["timezone"] == timezone else None


def to_apscheduler(spec: TriggerSpec) -> BaseTrigger:
    """The APScheduler trigger of a spec, cached by content: shared, do not mutate it.

    Raises:
        InvalidTriggerError: the spec is invalid.
    """
    return _compile(spec).trigger


def next_fire_time(spec: TriggerSpec, previous: datetime | None, now: datetime) -> datetime | None:
    """The first fire time at or after ``now`` (``previous`` None) or after ``previous``, in UTC.

    ``now`` is only read when ``previous`` is None. Returns ``None`` when the trigger is exhausted.
    Answers as APScheduler, except: a calendar interval without ``previous`` skips to ``now``
    (APScheduler returns its start date, however old), and interval fire times are exactly
    ``start_date + k * interval``, whatever jitter ``previous`` had.

    Raises:
        InvalidTriggerError: the spec is invalid.
        ValueError: a datetime is naive.
    """
    compiled, now = _compile(spec), aware(now, "now")
    if previous is None:
        return _jittered(compiled, _first_at_or_after(compiled, now))
    return _jittered(compiled, _after(compiled, aware(previous, "previous")))


_DATE_KEYS = frozenset(("type", "run_date", "timezone"))


def due_fire_times(
    spec: TriggerSpec, first: datetime, now: datetime, *, limit: int = 1000
) -> tuple[list[datetime], datetime | None]:
    """The fire times due from ``first`` (a stored next run time) to ``now``, and the next one after.

    The due list holds the ``limit`` most recent fire times <= ``now``, ascending (``first`` is left out
    when more are due). The next time is jittered, ``None`` when the trigger is exhausted; if ``first``
    is after ``now`` the answer is ``([], first)``. Missed fires are skipped arithmetically (interval) or
    by bisection (cron), not walked one by one.

    Raises:
        InvalidTriggerError: the spec is invalid.
        ValueError: a datetime is naive, or ``limit`` < 1.
    """
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    if type(spec) is dict and spec.get("type") == "date" and "run_date" in spec and spec.keys() <= _DATE_KEYS:
        # a one-shot fires once, at ``first``: compiling its spec (a cache miss for every
        # one-shot at a time of its own) cost more than the rest of its run; UTC times (all
        # the engine passes) are taken without a call
        if type(first) is not datetime or first.tzinfo is not UTC:
            first = aware(first, "first")
        if type(now) is not datetime or now.tzinfo is not UTC:
            now = aware(now, "now")
        return ([], first) if first > now else ([first], None)
    compiled, first, now = _compile(spec), aware(first, "first"), aware(now, "now")
    if first > now:
        return [], first
    if compiled.kind == "date":
        return [first], None
    if compiled.kind == "interval":
        due, following = _interval_due(compiled.plain, first, now, limit)
    elif compiled.kind == "cron":
        due, following = _cron_due(compiled, first, now, limit)
    else:  # calendar intervals fire at most daily: few to walk
        due, following, _ = _walk(compiled, first, now, sys.maxsize)
    return due[-limit:], _jittered(compiled, following)


def upcoming(spec: TriggerSpec, first: datetime, count: int) -> list[datetime]:
    """``first`` (a stored next run time) and the fire times after it, ``count`` in all (fewer
    when the trigger ends), without jitter: a preview.

    Raises:
        InvalidTriggerError: the spec is invalid.
        ValueError: ``first`` is naive, or ``count`` < 1.
    """
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    compiled = _compile(spec)
    times = [aware(first, "first")]
    while len(times) < count and compiled.kind != "date":
        found = _after(compiled, times[-1])
        if found is None:
            break
        times.append(found)
    return times


def fire_times_between(spec: TriggerSpec, start: datetime, end: datetime, *, limit: int) -> list[datetime]:
    """The fire times of a recurring spec from ``start`` to ``end`` (both included), ascending,
    without jitter, at most ``limit + 1`` (so a caller can tell that more than ``limit`` are due).

    The trigger's ``start_date`` is not a bound here: a cron schedule's fire times before it are
    listed, and an interval's grid is extended back from it (what the schedule would have fired
    had it existed then); a calendar interval keeps its start date (its calendar counts from it).
    ``end_date`` still ends the schedule.

    Raises:
        InvalidTriggerError: the spec is invalid or fires once (a date trigger).
        ValueError: a datetime is naive, or ``limit`` < 1.
    """
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    start, end = aware(start, "start"), aware(end, "end")
    canon = _compile(spec).spec
    if canon["type"] == "date":
        raise InvalidTriggerError("a date trigger fires once: it has no range of fire times")
    if canon["type"] == "cron":
        canon = {k: v for k, v in canon.items() if k != "start_date"}
    elif canon["type"] == "interval":
        anchor = datetime.fromisoformat(canon["start_date"])
        step = timedelta(seconds=canon["seconds"])
        if start < anchor:
            canon = {**canon, "start_date": (anchor + ((start - anchor) // step) * step).isoformat()}
    compiled = _compile(canon)
    times: list[datetime] = []
    found = _first_at_or_after(compiled, start)
    while found is not None and found <= end and len(times) <= limit:
        times.append(found)
        found = _after(compiled, found)
    return times


def describe(spec: TriggerSpec) -> str:
    """Human text: ``"cron[hour='8', minute='0'] (UTC)"``, ``"interval[0:05:00]"``, ``"date[...]"``.

    Raises:
        InvalidTriggerError: the spec is invalid.
    """
    canon = _compile(spec).spec
    kind, zone = canon["type"], canon["timezone"]
    if kind == "cron":
        shown = [f"{k}='{canon[k]}'" for k in CRON_FIELDS[:-1] if k in canon]
        if canon["second"] != "0" or not shown:
            shown.append(f"second='{canon['second']}'")
        text = f"cron[{', '.join(shown)}] ({zone})"
        if "dst" in canon:
            text += f" dst[repeated={canon['dst']['repeated']}, skipped={canon['dst']['skipped']}]"
    elif kind == "interval":
        text = f"interval[{timedelta(seconds=canon['seconds'])}]"
    elif kind == "date":
        text = f"date[{datetime.fromisoformat(canon['run_date']).isoformat(' ')}]"
    else:
        counts = [f"{k}={canon[k]}" for k in CALENDAR_FIELDS[:4] if canon[k]]
        clock = ":".join(f"{canon[k]:02d}" for k in CALENDAR_FIELDS[4:])
        text = f"calendarinterval[{', '.join(counts)}, at {clock}] ({zone})"
    return f"{text} with jitter {canon['jitter']}s" if "jitter" in canon else text


def is_one_shot(spec: TriggerSpec) -> bool:
    """Whether the spec fires once (a date trigger)."""
    return spec.get("type") == "date"


# -- computing fire times (all datetimes in UTC) ----------------------------------------------------


class _Compiled(NamedTuple):
    spec: TriggerSpec
    kind: str
    trigger: Any
    plain: Any  # the trigger without jitter, for the arithmetic
    jitter: float
    wall: WallCron | None = None  # a cron trigger with a DST policy other than APScheduler's


def _compile(spec: TriggerSpec) -> _Compiled:
    if not isinstance(spec, dict):
        raise InvalidTriggerError(f"a trigger spec must be a dict, got {spec!r}")
    try:
        return _compile_key(orjson.dumps(spec, option=orjson.OPT_SORT_KEYS))
    except TypeError as exc:
        raise InvalidTriggerError(f"trigger spec is not JSON: {exc}") from None


@lru_cache(maxsize=1024)
def _compile_key(key: bytes) -> _Compiled:
    spec = normalize(orjson.loads(key), "UTC", None)
    plain = _instantiate(spec, jitter=None)
    jitter = spec.get("jitter", 0)
    trigger = _instantiate(spec, jitter) if jitter else plain
    return _Compiled(spec, spec["type"], trigger, plain, jitter, _wall_cron(spec, plain))


def _wall_cron(spec: TriggerSpec, plain: Any) -> WallCron | None:
    if spec["type"] != "cron" or spec.get("dst", DEFAULT) == DEFAULT:
        return None
    walls = CronTrigger(**{k: spec[k] for k in CRON_FIELDS if k in spec}, timezone=UTC)
    start, end = (datetime.fromisoformat(spec[k]).astimezone(UTC) if k in spec else None for k in EXTRAS[:2])
    policy = Policy(spec["dst"]["repeated"], spec["dst"]["skipped"])
    return WallCron(walls, plain, zone_of(spec["timezone"]), policy, start, end)


def _instantiate(spec: TriggerSpec, jitter: float | None) -> Any:
    zone, kind = zone_of(spec["timezone"]), spec["type"]
    if kind == "date":
        return DateTrigger(run_date=datetime.fromisoformat(spec["run_date"]).astimezone(zone), timezone=zone)
    if kind == "calendarinterval":
        values = {k: spec[k] for k in CALENDAR_FIELDS}
        end = spec.get("end_date")
        return CalendarIntervalTrigger(
            **values, start_date=spec["start_date"], end_date=end, timezone=zone, jitter=jitter
        )
    start, end = (datetime.fromisoformat(spec[k]).astimezone(zone) if k in spec else None for k in EXTRAS[:2])
    if kind == "interval":
        return IntervalTrigger(
            seconds=spec["seconds"], start_date=start, end_date=end, timezone=zone, jitter=jitter
        )
    fields = {k: spec[k] for k in CRON_FIELDS if k in spec}
    return CronTrigger(**fields, start_date=start, end_date=end, timezone=zone, jitter=jitter)


def _jittered(compiled: _Compiled, found: datetime | None) -> datetime | None:
    if found is None or not compiled.jitter:
        return found
    jittered = found + timedelta(seconds=random.uniform(0, compiled.jitter))
    end = getattr(compiled.plain, "end_date", None)
    return min(jittered, end.astimezone(UTC)) if isinstance(end, datetime) else jittered


def _utc(found: datetime | None) -> datetime | None:
    return found.astimezone(UTC) if found is not None else None


def _first_at_or_after(compiled: _Compiled, moment: datetime) -> datetime | None:
    if compiled.wall is not None:
        return compiled.wall.after(moment - _TICK)
    if compiled.kind == "interval":
        return _grid(compiled.plain, moment)
    found = _utc(compiled.plain.get_next_fire_time(None, moment))
    while compiled.kind == "calendarinterval" and found is not None and found < moment:
        found = _after(compiled, found)
    return found


def _after(compiled: _Compiled, previous: datetime) -> datetime | None:
    if compiled.kind == "interval":
        return _grid(compiled.plain, previous + _TICK)
    if compiled.wall is not None:
        return compiled.wall.after(previous)
    if compiled.kind == "cron":
        # Not get_next_fire_time(previous, now): it tests `start == previous`, and in a DST fold datetimes
        # of different zones never compare equal (PEP 495), so it would return `previous` again.
        return _utc(compiled.plain.get_next_fire_time(None, previous + _TICK))
    if compiled.kind == "calendarinterval":  # it reads the calendar date of `previous`
        return _utc(compiled.plain.get_next_fire_time(previous.astimezone(compiled.plain.timezone), previous))
    return None


def _grid(trigger: Any, moment: datetime) -> datetime | None:
    """The first ``start_date + k * interval`` at or after ``moment`` (exact; APScheduler uses floats)."""
    start, step = trigger.start_date.astimezone(UTC), trigger.interval
    slot = start + (0 if moment <= start else -((start - moment) // step)) * step
    return None if trigger.end_date is not None and slot > trigger.end_date else slot


def _interval_due(
    trigger: Any, first: datetime, now: datetime, limit: int
) -> tuple[list[datetime], datetime | None]:
    start, step, end = trigger.start_date.astimezone(UTC), trigger.interval, trigger.end_date
    following, after_first = _grid(trigger, now + _TICK), _grid(trigger, first + _TICK)
    if after_first is None or after_first > now:
        return [first], following
    begin, stop = (after_first - start) // step, ((min(now, end) if end else now) - start) // step
    slots = [start + k * step for k in range(max(begin, stop - limit + 1), stop + 1)]
    return ([first] if stop - begin + 1 < limit else []) + slots, following


def _cron_due(
    compiled: _Compiled, first: datetime, now: datetime, limit: int
) -> tuple[list[datetime], datetime | None]:
    cap = 2 * limit
    times, following, complete = _walk(compiled, first, now, cap)
    if complete:
        return times, following
    # Over `cap` are due: bisect on a start time whose walk to `now` meets limit..cap fire times, first
    # guessing from the density of those just walked (a start time's count only grows as it moves back).
    early, late, probe = first, now, now - (times[-1] - first) * 0.75
    for _ in range(64):
        if not early < probe < late:
            probe = early + (late - early) / 2
        times, following, complete = _walk(compiled, _first_at_or_after(compiled, probe), now, cap)
        if complete and len(times) >= limit:
            return times, following
        early, late = (probe, late) if not complete else (early, probe)
        probe = early + (late - early) / 2
    return _walk(compiled, _first_at_or_after(compiled, late), now, cap)[:2]  # not reached in practice


def _walk(
    compiled: _Compiled, found: datetime | None, now: datetime, cap: int
) -> tuple[list[datetime], datetime | None, bool]:
    """Fire times from ``found`` to ``now`` and the one after; ``False`` if there are more than ``cap``."""
    times: list[datetime] = []
    while found is not None and found <= now:
        if len(times) == cap:
            return times, found, False
        times.append(found)
        found = _after(compiled, found)
    return times, found, True
