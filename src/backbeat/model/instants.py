"""UTC instants as epoch microseconds and as the ISO text specs and runs store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
EPOCH_NAIVE = EPOCH.replace(tzinfo=None)
_MICROSECOND = timedelta(microseconds=1)

_last_second: tuple[int, str] = (0, "1970-01-01T00:00:00")
"""The last whole second :func:`iso_us` spelled (one tuple: a thread reads a consistent pair)."""


def to_us(value: datetime) -> int:
    """Epoch microseconds of an aware datetime (a naive one is taken as UTC)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return (value - EPOCH) // _MICROSECOND


def iso_us(micros: int) -> str:
    """``isoformat()`` of the UTC datetime of epoch microseconds, at a third of its cost: the
    whole second is spelled once for the times that share it (a batch's are close together).

    Raises:
        OverflowError: the time is out of ``datetime``'s range.
    """
    global _last_second
    second, fraction = divmod(micros, 1_000_000)
    last = _last_second
    if last[0] != second:
        last = _last_second = (second, (EPOCH_NAIVE + timedelta(0, second)).isoformat())
    return f"{last[1]}.{fraction:06d}+00:00" if fraction else f"{last[1]}+00:00"
