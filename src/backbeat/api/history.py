"""Run history as the facade offers it: the recording settings from the configuration, and a
store query from ``run_history``'s arguments, checked at call time."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime, timedelta

from backbeat.errors import ConfigurationError
from backbeat.model.history import FAILED, HistoryOutcome, HistoryQuery, HistorySettings, decode_cursor

OutcomeFilter = str | HistoryOutcome | Iterable[str | HistoryOutcome] | None
"""One outcome, several, or ``"failed"`` (failure, retry scheduled, dead-lettered)."""


def history_settings(
    enabled: bool, retention: timedelta, per_task: int, record_args: bool
) -> HistorySettings | None:
    """What the engines record, ``None`` when history is off.

    Raises:
        ConfigurationError: a retention that is not a positive timedelta, a count below 1.
    """
    if not enabled:
        return None
    try:
        return HistorySettings(retention=retention, per_task=per_task, record_args=record_args)
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None


def outcomes_of(outcome: OutcomeFilter) -> frozenset[HistoryOutcome] | None:
    """The outcomes a filter names.

    Raises:
        ValueError: an unknown outcome (the message lists the known ones).
    """
    if outcome is None:
        return None
    names = [outcome] if isinstance(outcome, str) else list(outcome)
    found: set[HistoryOutcome] = set()
    for name in names:
        if name == "failed":
            found |= FAILED
            continue
        try:
            found.add(HistoryOutcome(name))
        except ValueError:
            known = ", ".join(["failed", *(o.value for o in HistoryOutcome)])
            raise ValueError(f"unknown run outcome {name!r}; known: {known}") from None
    return frozenset(found)


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
DURATION_PATTERN = r"^([0-9]{1,6}(\.[0-9]{1,6})?[smhdw]){1,5}$"
"""What a duration looks like (``90s``, ``1h30m``, ``7d``), for the REST API's schema."""
_SPAN = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")


def parse_since(text: str, what: str = "since") -> datetime | timedelta:
    """``since`` as a user writes it: how long ago (``90s``, ``30m``, ``1h30m``, ``7d``, ``2w``)
    or an ISO time with a time zone (``2026-03-29T01:00:00+00:00``, ``...Z``).

    Raises:
        ValueError: neither (the message shows both forms).
    """
    text = text.strip()
    if _spans(text):
        try:
            return timedelta(seconds=sum(float(n) * _UNITS[unit] for n, unit in _SPAN.findall(text)))
        except OverflowError:
            raise ValueError(f"{what} {text!r} is too long ago") from None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        raise ValueError(
            f"{what} {text!r} is neither a duration (90s, 30m, 1h30m, 7d) "
            "nor an ISO time with a time zone (2026-03-29T01:00:00+00:00)"
        )
    return when


def _spans(text: str) -> bool:
    return bool(text) and _SPAN.sub("", text) == ""


def history_query(
    *,
    task_id: str | None,
    outcome: OutcomeFilter,
    since: datetime | timedelta | None,
    limit: int,
    cursor: str | None,
    now: datetime,
) -> HistoryQuery:
    """The store query of ``run_history``'s arguments (``since`` a time, or how long ago).

    Raises:
        ValueError: an unknown outcome, a naive ``since``, a limit outside 1..1000, a cursor
            not returned by ``run_history``.
    """
    if isinstance(since, timedelta):
        # further back than any time there is: everything
        since = now - since if since < now - datetime.min.replace(tzinfo=now.tzinfo) else None
    elif since is not None and since.tzinfo is None:
        raise ValueError(f"since must be an aware datetime (with a time zone), not {since!r}")
    if not isinstance(limit, int) or not 1 <= limit <= 1000:
        raise ValueError(f"limit must be an integer from 1 to 1000, not {limit!r}")
    if cursor is not None:
        decode_cursor(cursor)
    return HistoryQuery(
        task_id=task_id, outcomes=outcomes_of(outcome), since=since, limit=limit, cursor=cursor
    )
