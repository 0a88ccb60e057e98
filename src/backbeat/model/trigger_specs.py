"""Building trigger specs: keyword arguments, crontab strings and APScheduler trigger objects
become the canonical JSON spec that :mod:`backbeat.triggers` computes fire times from."""

from __future__ import annotations

import math
import re
from datetime import UTC, date, datetime, timedelta, tzinfo
from datetime import timezone as fixed_timezone
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.triggers.calendarinterval import CalendarIntervalTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.cron.fields import MAX_VALUES, MIN_VALUES
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from backbeat.errors import InvalidTriggerError
from backbeat.model.dst import normalize_dst

TriggerSpec = dict[str, Any]

CRON_FIELDS: tuple[str, ...] = tuple(CronTrigger.FIELD_NAMES)
_INTERVAL_UNITS = ("weeks", "days", "hours", "minutes", "seconds")
CALENDAR_FIELDS = ("years", "months", "weeks", "days", "hour", "minute", "second")
EXTRAS = ("start_date", "end_date", "jitter")
_ARGS: dict[str, frozenset[str]] = {
    "cron": frozenset({*CRON_FIELDS, "cron", "dst", *EXTRAS}),
    "interval": frozenset({*_INTERVAL_UNITS, "interval", *EXTRAS}),
    "date": frozenset({"run_date"}),
    "calendarinterval": frozenset({*CALENDAR_FIELDS, *EXTRAS}),
}
_KINDS = ", ".join(repr(k) for k in _ARGS)
_ALIASES = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *", "@weekly": "0 0 * * 0"}
_ALIASES |= {"@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *"}
_CRONTAB_FIELDS = ("minute", "hour", "day", "month", "day_of_week")
_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_NUMBERS = re.compile(r"(\*|\d+)(?:-(\d+))?(?:/(\d+))?$")
_OFFSET = re.compile(r"([+-])(\d\d):(\d\d)$")


# -- building specs ------------------------------------------------------------------------------


def from_arguments(trigger: object, kwargs: dict[str, Any]) -> dict[str, Any]:
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


def from_apscheduler(trigger: Any) -> dict[str, Any]:
    extras = {k: getattr(trigger, k, None) for k in EXTRAS}
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
            k: getattr(clock if k in ("hour", "minute", "second") else trigger, k) for k in CALENDAR_FIELDS
        }
        return {"type": "calendarinterval", **values, **extras, "timezone": trigger.timezone}
    raise InvalidTriggerError(f"unsupported APScheduler trigger {type(trigger).__name__}: expected {_KINDS}")


def normalize(spec: dict[str, Any], timezone: object, now: datetime | None) -> TriggerSpec:
    args = {k: v for k, v in spec.items() if v is not None}
    kind, tz = args.pop("type", None), _tz_name(args.pop("timezone", None) or timezone)
    if not isinstance(kind, str) or kind not in _ARGS:
        raise InvalidTriggerError(f"unknown trigger type {kind!r} (expected {_KINDS}) in {spec!r}")
    unknown = sorted(set(args) - _ARGS[kind])
    if unknown:
        raise InvalidTriggerError(f"unknown argument(s) for a {kind} trigger: {', '.join(unknown)}")
    return {"type": kind, **_BUILDERS[kind](args, zone_of(tz), now), "timezone": tz}


def _cron(args: dict[str, Any], zone: tzinfo, now: datetime | None) -> dict[str, Any]:
    fields, context = {k: args[k] for k in CRON_FIELDS if k in args}, "invalid cron trigger"
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
        **({"dst": normalize_dst(args["dst"])} if "dst" in args else {}),
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
    values = {k: _number(args.get(k, 0), k, integer=True) for k in CALENDAR_FIELDS}
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


def aware(value: datetime, name: str) -> datetime:
    if type(value) is datetime and value.tzinfo is UTC:  # the common case, twice per fire: no calls
        return value
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
        found = zone_of(value)
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
def zone_of(name: str) -> tzinfo:
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
