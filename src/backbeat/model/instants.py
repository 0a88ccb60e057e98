"""UTC instants as epoch microseconds and as the ISO text specs and runs store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
EPOCH_NAIVE = EPOCH.replace(tzinfo=None)
_MICROSECOND = timedelta(microseconds=1)

_SECONDS_KEPT = 64
_seconds: dict[int, str] = {}
"""Whole seconds :func:`iso_us` spelled lately, by epoch second (cleared when full)."""


def to_us(value: datetime) -> int:
    """Epoch microseconds of an aware datetime (a naive one is taken as UTC)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return (value - EPOCH) // _MICROSECOND


def iso_us(micros: int) -> str:
    """``isoformat()`` of the UTC datetime of epoch microseconds, at a third of its cost: a whole
    second is spelled once for the times that share it. A few dozen seconds are kept, so the
    times of a batch, its tasks' creation times and the run dates of adds made meanwhile do not
    push one another out (one kept second did, at about 12k instructions a miss).

    Raises:
        OverflowError: the time is out of ``datetime``'s range.
    """
    second, fraction = divmod(micros, 1_000_000)
    text = _seconds.get(second)
    if text is None:
        text = (EPOCH_NAIVE + timedelta(0, second)).isoformat()
        if len(_seconds) >= _SECONDS_KEPT:
            _seconds.clear()
        _seconds[second] = text
    return f"{text}.{fraction:06d}+00:00" if fraction else f"{text}+00:00"
