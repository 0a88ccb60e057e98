"""Trigger specs: JSON dicts saying when a task fires, computed with APScheduler 3's triggers.

``{"type": "cron", "hour": "8", "minute": "0", "second": "0", "timezone": "Europe/Paris"}``,
``{"type": "interval", "seconds": 300, "start_date": "2026-01-01T08:05:00+00:00", "timezone": "UTC"}``,
``{"type": "date", "run_date": ...}``, ``{"type": "calendarinterval", "months": 1, ...}``. Datetimes are
ISO-8601 strings with an offset (naive strings are refused), dates ISO dates, timezones IANA names or
fixed offsets ("+02:00"). Cron fields keep APScheduler's keyword semantics (``day_of_week`` 0 = Monday);
crontab strings follow cron (0 and 7 = Sunday) and are stored as weekday names. As in APScheduler (not
cron), a crontab restricting both day and day_of_week fires only when both match.
"""

from __future__ import annotations

import math
import random
import re
import sys
from datetime import UTC, date, datetime, timedelta, tzinfo
from datetime import timezone as fixed_timezone
from functools import lru_cache
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import orjson
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.calendarinterval import CalendarIntervalTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.cron.fields import MAX_VALUES, MIN_VALUES
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from backbeat.errors import InvalidTriggerError

TriggerSpec = dict[str, Any]

_CRON_FIELDS: tuple[str, ...] = tuple(CronTrigger.FIELD_NAMES)
_INTERVAL_UNITS = ("weeks", "days", "hours", "minutes", "seconds")
_CALENDAR_FIELDS = ("years", "months", "weeks", "days", "hour", "minute", "second")
_EXTRAS = ("start_date", "end_date", "jitter")
_ARGS: dict[str, frozenset[str]] = {
    "cron": frozenset({*_CRON_FIELDS, "cron", *_EXTRAS}),
    "interval": frozenset({*_INTERVAL_UNITS, "interval", *_EXTRAS}),
    "date": frozenset({"run_date"}),
    "calendarinterval": frozenset({*_CALENDAR_FIELDS, *_EXTRAS}),
}
_KINDS = ", ".join(repr(k) for k in _ARGS)
_ALIASES = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *", "@weekly": "0 0 * * 0"}
_ALIASES |= {"@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *"}
_CRONTAB_FIELDS = ("minute", "hour", "day", "month", "day_of_week")
_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_NUMBERS = re.compile(r"(\*|\d+)(?:-(\d+))?(?:/(\d+))?$")
_OFFSET = re.compile(r"([+-])(\d\d):(\d\d)$")
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
    now = _aware(now, "now") if now is not None else datetime.now(UTC)
    if isinstance(trigger, BaseTrigger):
        if kwargs or timezone:
            raise InvalidTriggerError(f"an APScheduler trigger takes no other arguments, got {[*kwargs]}")
        return _normalize(_from_apscheduler(trigger), default_timezone, now)
    if isinstance(trigger, dict):
        if kwargs:
            raise InvalidTriggerError(f"a trigger spec dict takes no other arguments, got {[*kwargs]}")
        return _normalize(trigger, timezone or default_timezone, now)
    return _normalize(_from_arguments(trigger, kwargs), timezone or default_timezone, now)


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
    compiled, now = _compile(spec), _aware(now, "now")
    if previous is None:
        return _jittered(compiled, _first_at_or_after(compiled, now))
    return _jittered(compiled, _after(compiled, _aware(previous, "previous")))


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
    compiled, first, now = _compile(spec), _aware(first, "first"), _aware(now, "now")
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


def describe(spec: TriggerSpec) -> str:
    """Human text: ``"cron[hour='8', minute='0'] (UTC)"``, ``"interval[0:05:00]"``, ``"date[...]"``.

    Raises:
        InvalidTriggerError: the spec is invalid.
    """
    canon = _compile(spec).spec
    kind, zone = canon["type"], canon["timezone"]
    if kind == "cron":
        shown = [f"{k}='{canon[k]}'" for k in _CRON_FIELDS[:-1] if k in canon]
        if canon["second"] != "0" or not shown:
            shown.append(f"second='{canon['second']}'")
        text = f"cron[{', '.join(shown)}] ({zone})"
    elif kind == "interval":
        text = f"interval[{timedelta(seconds=canon['seconds'])}]"
    elif kind == "date":
        text = f"date[{datetime.fromisoformat(canon['run_date']).isoformat(' ')}]"
    else:
        counts = [f"{k}={canon[k]}" for k in _CALENDAR_FIELDS[:4] if canon[k]]
        clock = ":".join(f"{canon[k]:02d}" for k in _CALENDAR_FIELDS[4:])
        text = f"calendarinterval[{', '.join(counts)}, at {clock}] ({zone})"
    return f"{text} with jitter {canon['jitter']}s" if "jitter" in canon else text


def is_one_shot(spec: TriggerSpec) -> bool:
    """Whether the spec fires once (a date trigger)."""
    return spec.get("type") == "date"


# -- building specs ------------------------------------------------------------------------------


def _from_arguments(trigger: object, kwargs: dict[str, Any]) -> dict[str, Any]:
    if trigger is None:
        for key, kind in (("cron", "cron"), ("interval", "interval"), ("run_date", "date")):
            if key in kwargs:
                return {"type": kind, **kwargs}
        accepted = f"a crontab string, {_KINDS} with its arguments, or cron=, interval= or run_date="
        raise InvalidTriggerError(f"no trigger given: pass {accepted}")
    if not isinstance(trigger, str):
        accepted = f"an APScheduler trigger, a crontab string, {_KINDS} or a spec dict"
        raise InvalidTriggerError(f"unsupported trigger {trigger!r}: expected {accepted}")
    if trigger.strip().lower() in _ARGS:
        return {"type": trigger.strip().lower(), **kwargs}
    if not trigger.strip().startswith("@") and len(trigger.split()) < 2:
        raise InvalidTriggerError(f"unknown trigger {trigger!r}: expected {_KINDS} or a crontab string")
    if "cron" in kwargs:
        raise InvalidTriggerError(f"crontab {trigger!r} given twice: as the trigger and as cron=")
    return {"type": "cron", "cron": trigger, **kwargs}


def _from_apscheduler(trigger: Any) -> dict[str, Any]:
    extras = {k: getattr(trigger, k, None) for k in _EXTRAS}
    if isinstance(trigger, CronTrigger):
        return {
            "type": "cron",
            **{f.name: str(f) for f in trigger.fields},
            **extras,
            "timezone": trigger.timezone,
        }
    if isinstance(trigger, IntervalTrigger):
        return {"type": "interval", "interval": trigger.interval, **extras, "timezone": trigger.timezone}
    if isinstance(trigger, DateTrigger):
        return {"type": "date", "run_date": trigger.run_date, "timezone": trigger.run_date.tzinfo}
    if isinstance(trigger, CalendarIntervalTrigger):
        clock = trigger._time  # the only place APScheduler keeps the time of day
        values = {
            k: getattr(clock if k in ("hour", "minute", "second") else trigger, k) for k in _CALENDAR_FIELDS
        }
        return {"type": "calendarinterval", **values, **extras, "timezone": trigger.timezone}
    raise InvalidTriggerError(f"unsupported APScheduler trigger {type(trigger).__name__}: expected {_KINDS}")


def _normalize(spec: dict[str, Any], timezone: object, now: datetime | None) -> TriggerSpec:
    args = {k: v for k, v in spec.items() if v is not None}
    kind, tz = args.pop("type", None), _tz_name(args.pop("timezone", None) or timezone)
    if not isinstance(kind, str) or kind not in _ARGS:
        raise InvalidTriggerError(f"unknown trigger type {kind!r} (expected {_KINDS}) in {spec!r}")
    unknown = sorted(set(args) - _ARGS[kind])
    if unknown:
        raise InvalidTriggerError(f"unknown argument(s) for a {kind} trigger: {', '.join(unknown)}")
    return {"type": kind, **_BUILDERS[kind](args, _zone(tz), now), "timezone": tz}


def _cron(args: dict[str, Any], zone: tzinfo, now: datetime | None) -> dict[str, Any]:
    fields, context = {k: args[k] for k in _CRON_FIELDS if k in args}, "invalid cron trigger"
    if "cron" in args:
        if fields:
            raise InvalidTriggerError(f"cron={args['cron']!r} cannot be combined with {', '.join(fields)}")
        fields, context = _crontab(args["cron"]), f"invalid cron expression {args['cron']!r}"
    for name, value in fields.items():
        problem = _field_problem(name, value)
        if problem:
            raise InvalidTriggerError(f"{context}: {problem}")
    built = CronTrigger(**{k: str(v) for k, v in fields.items()}, timezone=zone)
    # "second" is always kept: rebuilding then never fills the fields after the last one with defaults
    return {
        **{f.name: str(f) for f in built.fields if str(f) != "*" or f.name == "second"},
        **_extras(args, zone),
    }


def _interval(args: dict[str, Any], zone: tzinfo, now: datetime | None) -> dict[str, Any]:
    units = {k: _number(args[k], k) for k in _INTERVAL_UNITS if k in args}
    if "interval" in args and units:
        raise InvalidTriggerError(f"interval= cannot be combined with {', '.join(units)}")
    length = args.get("interval")
    if not isinstance(length, timedelta):
        try:
            length = (
                timedelta(seconds=_number(length, "interval")) if "interval" in args else timedelta(**units)
            )
        except OverflowError:
            raise InvalidTriggerError(f"interval {args} is too long") from None
    if length <= timedelta(0):
        raise InvalidTriggerError(f"interval must be positive, got {length}")
    if "start_date" not in args and now is None:
        raise InvalidTriggerError("interval trigger spec has no start_date")
    seconds = length.total_seconds() if length.microseconds else length // timedelta(seconds=1)
    return {"seconds": seconds, **_extras(args, zone, now + length if now else None)}


def _date(args: dict[str, Any], zone: tzinfo, now: datetime | None) -> dict[str, Any]:
    run_date = _datetime(args.get("run_date"), "run_date", zone) or now
    if run_date is None:
        raise InvalidTriggerError("date trigger spec has no run_date")
    return {"run_date": run_date.astimezone(zone).isoformat()}


def _calendar(args: dict[str, Any], zone: tzinfo, now: datetime | None) -> dict[str, Any]:
    values = {k: _number(args.get(k, 0), k, integer=True) for k in _CALENDAR_FIELDS}
    start = _day(args.get("start_date"), "start_date") or (now.astimezone(zone).date() if now else None)
    if start is None:
        raise InvalidTriggerError("calendarinterval trigger spec has no start_date")
    end = _day(args.get("end_date"), "end_date")
    try:
        CalendarIntervalTrigger(**values, start_date=start, end_date=end, timezone=zone)
    except ValueError as exc:
        raise InvalidTriggerError(f"invalid calendarinterval trigger: {exc}") from None
    optional = {
        "end_date": end.isoformat() if end else None,
        "jitter": _number(args.get("jitter", 0), "jitter"),
    }
    return {**values, "start_date": start.isoformat(), **{k: v for k, v in optional.items() if v}}


_BUILDERS = {"cron": _cron, "interval": _interval, "date": _date, "calendarinterval": _calendar}


def _extras(args: dict[str, Any], zone: tzinfo, default_start: datetime | None = None) -> dict[str, Any]:
    start = _datetime(args.get("start_date"), "start_date", zone) or default_start
    end = _datetime(args.get("end_date"), "end_date", zone)
    if start and end and end < start:
        raise InvalidTriggerError(f"end_date {end.isoformat()} is before start_date {start.isoformat()}")
    optional = {
        "start_date": start.astimezone(zone).isoformat() if start else None,
        "end_date": end.astimezone(zone).isoformat() if end else None,
        "jitter": _number(args.get("jitter", 0), "jitter"),
    }
    return {k: v for k, v in optional.items() if v}


def _crontab(expr: object) -> dict[str, str]:
    if not isinstance(expr, str):
        raise InvalidTriggerError(f"cron must be a crontab string, got {expr!r}")
    text = expr.strip().lower()
    if text.startswith("@") and text not in _ALIASES:
        raise InvalidTriggerError(f"unknown crontab alias {expr!r}: expected one of {', '.join(_ALIASES)}")
    values = _ALIASES.get(text, expr).split()
    if len(values) != 5:
        expected = f"5 fields ({' '.join(_CRONTAB_FIELDS)})"
        raise InvalidTriggerError(f"invalid cron expression {expr!r}: expected {expected}, got {len(values)}")
    fields = dict(zip(_CRONTAB_FIELDS, values, strict=True))
    return {**fields, "day_of_week": _crontab_weekdays(fields["day_of_week"], expr)}


def _crontab_weekdays(value: str, expr: str) -> str:
    """Cron weekdays (0-7, 0 and 7 = Sunday) as APScheduler weekday names (its numbers start on Monday)."""
    days: set[int] = set()
    names: list[str] = []  # weekday names mean the same to both: APScheduler checks them
    for part in value.split(","):
        match = _NUMBERS.match(part)
        if value == "*" or match is None or (match[1] == "*" and match[2]):
            names.append(part)
            continue
        first, last, step = match.groups()
        low = 0 if first == "*" else int(first)
        high = int(last) if last else (7 if first == "*" or step else low)
        if high > 7:
            problem = f"day_of_week value {high} is out of range 0-7"
        elif low > high or not 0 < int(step or 1) <= 7:
            problem = f"bad day_of_week range {part!r}"
        else:
            days.update((n - 1) % 7 for n in range(low, high + 1, int(step or 1)))
            continue
        raise InvalidTriggerError(f"invalid cron expression {expr!r}: {problem}")
    runs: list[list[int]] = []
    for day in sorted(days):
        if runs and runs[-1][-1] == day - 1:
            runs[-1].append(day)
        else:
            runs.append([day])
    ranges = [_WEEKDAYS[r[0]] + (f"-{_WEEKDAYS[r[-1]]}" if len(r) > 1 else "") for r in runs]
    return ",".join(ranges + names)


def _field_problem(name: str, value: object) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | str):
        return f"{name} must be an int or a string, got {value!r}"
    text, low, high = str(value).strip(), MIN_VALUES[name], MAX_VALUES[name]
    for part in re.split(r" *, *", text):
        match = _NUMBERS.match(part)
        for number in match.groups()[:2] if match else ():
            if number and number != "*" and not low <= int(number) <= high:
                return f"{name} value {int(number)} is out of range {low}-{high}"
    try:
        CronTrigger.FIELDS_MAP[name](name, text)
    except ValueError as exc:
        return f"{name} field {text!r}: {exc}"
    return None


# -- values --------------------------------------------------------------------------------------


def _aware(value: datetime, name: str) -> datetime:
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got {value!r}")
    return value.astimezone(UTC)


def _datetime(value: object, name: str, zone: tzinfo) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value.replace(tzinfo=zone) if value is not None and value.tzinfo is None else value
    if not isinstance(value, str):
        raise InvalidTriggerError(f"{name} must be a datetime or an ISO-8601 string, got {value!r}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidTriggerError(f"{name} {value!r} is not an ISO-8601 datetime") from None
    if parsed.tzinfo is None:
        raise InvalidTriggerError(f"{name} {value!r} has no UTC offset (add one, e.g. '+00:00')")
    return parsed


def _day(value: object, name: str) -> date | None:
    if value is None or (isinstance(value, date) and not isinstance(value, datetime)):
        return value
    if not isinstance(value, str):
        raise InvalidTriggerError(f"{name} must be a date or an ISO-8601 date string, got {value!r}")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InvalidTriggerError(f"{name} {value!r} is not an ISO-8601 date") from None


def _number(value: Any, name: str, *, integer: bool = False) -> Any:
    kinds, what = (int, "integer") if integer else (int | float, "number")
    if isinstance(value, bool) or not isinstance(value, kinds) or not math.isfinite(value) or value < 0:
        raise InvalidTriggerError(f"{name} must be a non-negative {what}, got {value!r}")
    return value


def _tz_name(value: object) -> str:
    """The name stored for a timezone: its IANA key, "UTC", or a fixed offset like "+05:30"."""
    if isinstance(value, str):
        found = _zone(value)
        return _offset_name(found.utcoffset(None)) if isinstance(found, fixed_timezone) else value
    if isinstance(value, ZoneInfo) and value.key:
        return _tz_name(value.key)
    if isinstance(value, fixed_timezone):
        return _offset_name(value.utcoffset(None))
    zone = getattr(value, "zone", None)  # pytz
    if isinstance(zone, str):
        return _tz_name(zone)
    raise InvalidTriggerError(f"timezone {value!r} has no IANA name: pass one, e.g. 'Europe/Paris'")


def _offset_name(offset: timedelta | None) -> str:
    offset = offset or timedelta(0)
    if offset % timedelta(minutes=1):
        raise InvalidTriggerError(f"timezone offset {offset} is not a whole number of minutes")
    minutes = abs(offset) // timedelta(minutes=1)
    sign = "-" if offset < timedelta(0) else "+"
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}" if minutes else "UTC"


@lru_cache(maxsize=256)
def _zone(name: str) -> tzinfo:
    if name == "UTC":
        return UTC
    match = _OFFSET.match(name)
    if match and int(match[2]) < 24 and int(match[3]) < 60:
        offset = timedelta(hours=int(match[2]), minutes=int(match[3]))
        return fixed_timezone(-offset if match[1] == "-" else offset)
    try:
        return ZoneInfo(name)
    except (KeyError, ValueError, OSError):
        raise InvalidTriggerError(
            f"unknown timezone {name!r}: expected an IANA name like 'Europe/Paris'"
        ) from None


# -- computing fire times (all datetimes in UTC) ----------------------------------------------------


class _Compiled(NamedTuple):
    spec: TriggerSpec
    kind: str
    trigger: Any
    plain: Any  # the trigger without jitter, for the arithmetic
    jitter: float


def _compile(spec: TriggerSpec) -> _Compiled:
    if not isinstance(spec, dict):
        raise InvalidTriggerError(f"a trigger spec must be a dict, got {spec!r}")
    try:
        return _compile_key(orjson.dumps(spec, option=orjson.OPT_SORT_KEYS))
    except TypeError as exc:
        raise InvalidTriggerError(f"trigger spec is not JSON: {exc}") from None


@lru_cache(maxsize=1024)
def _compile_key(key: bytes) -> _Compiled:
    spec = _normalize(orjson.loads(key), "UTC", None)
    plain = _instantiate(spec, jitter=None)
    jitter = spec.get("jitter", 0)
    return _Compiled(spec, spec["type"], _instantiate(spec, jitter) if jitter else plain, plain, jitter)


def _instantiate(spec: TriggerSpec, jitter: float | None) -> Any:
    zone, kind = _zone(spec["timezone"]), spec["type"]
    if kind == "date":
        return DateTrigger(run_date=datetime.fromisoformat(spec["run_date"]).astimezone(zone), timezone=zone)
    if kind == "calendarinterval":
        values = {k: spec[k] for k in _CALENDAR_FIELDS}
        end = spec.get("end_date")
        return CalendarIntervalTrigger(
            **values, start_date=spec["start_date"], end_date=end, timezone=zone, jitter=jitter
        )
    start, end = (
        datetime.fromisoformat(spec[k]).astimezone(zone) if k in spec else None for k in _EXTRAS[:2]
    )
    if kind == "interval":
        return IntervalTrigger(
            seconds=spec["seconds"], start_date=start, end_date=end, timezone=zone, jitter=jitter
        )
    fields = {k: spec[k] for k in _CRON_FIELDS if k in spec}
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
    if compiled.kind == "interval":
        return _grid(compiled.plain, moment)
    found = _utc(compiled.plain.get_next_fire_time(None, moment))
    while compiled.kind == "calendarinterval" and found is not None and found < moment:
        found = _after(compiled, found)
    return found


def _after(compiled: _Compiled, previous: datetime) -> datetime | None:
    if compiled.kind == "interval":
        return _grid(compiled.plain, previous + _TICK)
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
