"""A restricted unpickler for APScheduler 3 job states: it admits only the classes a job state holds.

A job state is a pickled dict of builtins, the job's trigger (APScheduler's trigger, cron field and
expression classes), datetimes and time zones (``datetime``, ``zoneinfo``, ``pytz``), and the job's
arguments. Any other global a pickle names (``os.system``, a user's class, ``builtins.eval``) is
refused before it is looked up, so reading a store runs no code but the constructors and
``__setstate__`` of these data classes.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo

from backbeat.errors import BackbeatError

_APSCHEDULER: dict[str, frozenset[str]] = {
    "apscheduler.triggers.cron": frozenset({"CronTrigger"}),
    "apscheduler.triggers.cron.fields": frozenset(
        {"BaseField", "WeekField", "DayOfMonthField", "DayOfWeekField", "MonthField"}
    ),
    "apscheduler.triggers.cron.expressions": frozenset(
        {
            "AllExpression",
            "RangeExpression",
            "MonthRangeExpression",
            "WeekdayRangeExpression",
            "WeekdayPositionExpression",
            "LastDayOfMonthExpression",
        }
    ),
    "apscheduler.triggers.interval": frozenset({"IntervalTrigger"}),
    "apscheduler.triggers.date": frozenset({"DateTrigger"}),
    "apscheduler.triggers.calendarinterval": frozenset({"CalendarIntervalTrigger"}),
    "apscheduler.triggers.combining": frozenset({"AndTrigger", "OrTrigger"}),
}
_DATA: dict[str, frozenset[str]] = {
    "datetime": frozenset({"datetime", "date", "time", "timedelta", "timezone"}),
    "zoneinfo": frozenset({"ZoneInfo"}),
    "pytz": frozenset({"_p", "_UTC"}),  # APScheduler < 3.9 and users' pytz zones
    "decimal": frozenset({"Decimal"}),
    "uuid": frozenset({"UUID"}),
    "builtins": frozenset({"set", "frozenset", "bytearray", "complex", "slice", "range"}),
    "__builtin__": frozenset({"set", "frozenset", "bytearray"}),  # protocol 2 spells builtins so
}
ALLOWED: dict[str, frozenset[str]] = {**_APSCHEDULER, **_DATA}
"""Module -> names a job state may name (besides the two guarded helpers below)."""


class RefusedPickleError(BackbeatError):
    """A job state names something outside :data:`ALLOWED`, or is not a valid pickle."""


def _getattr(obj: object, name: str) -> Any:
    # protocol 4+ pickles a ZoneInfo as getattr(ZoneInfo, "_unpickle")(key, flag)
    if obj is ZoneInfo and name == "_unpickle":
        return ZoneInfo._unpickle  # type: ignore[attr-defined]
    raise RefusedPickleError(f"getattr({_name(obj)}, {name!r}) is not allowed")


def _encode(text: str, encoding: str = "utf-8") -> bytes:
    # protocol 2 pickles bytes as _codecs.encode(text, "latin1")
    if encoding != "latin1":
        raise RefusedPickleError(f"_codecs.encode with {encoding!r} is not allowed")
    return text.encode("latin1")


_GUARDED: dict[tuple[str, str], Callable[..., Any]] = {
    ("builtins", "getattr"): _getattr,
    ("__builtin__", "getattr"): _getattr,
    ("_codecs", "encode"): _encode,
}


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        guarded = _GUARDED.get((module, name))
        if guarded is not None:
            return guarded
        if name not in ALLOWED.get(module, frozenset()):
            raise RefusedPickleError(
                f"it names {module}.{name}, which no APScheduler job state holds (only its triggers, "
                "datetime and time zone types, and builtins are admitted)"
            )
        if module == "__builtin__":
            module = "builtins"
        try:
            return super().find_class(module, name)
        except ImportError as exc:  # pytz zones with pytz not installed
            raise RefusedPickleError(
                f"it holds {module}.{name} but {module!r} is not installed (pip install 'backbeat[migrate]')"
            ) from exc

    def persistent_load(self, pid: Any) -> Any:
        raise RefusedPickleError("it holds a persistent reference, which no APScheduler job state holds")


def loads(data: bytes) -> Any:
    """Unpickle ``data`` admitting only the globals of :data:`ALLOWED`.

    Raises:
        RefusedPickleError: ``data`` names another global, or is not a pickle; nothing it names
            outside :data:`ALLOWED` has been imported or called.
    """
    try:
        return _Unpickler(io.BytesIO(data)).load()
    except RefusedPickleError:
        raise
    except Exception as exc:  # a truncated or corrupt pickle fails in many ways
        raise RefusedPickleError(f"it is not a valid pickle: {type(exc).__name__}: {exc}") from exc


def _name(obj: object) -> str:
    return getattr(obj, "__qualname__", None) or type(obj).__name__
