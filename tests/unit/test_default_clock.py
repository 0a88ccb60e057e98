"""The default clock reads the time through its module's ``datetime``, as patching tools expect."""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo

import pytest

from backbeat.model import records
from backbeat.model.records import utcnow

FROZEN = datetime(2026, 3, 29, 1, 30, tzinfo=UTC)


class _FrozenDatetime(datetime):
    """What freezegun puts in place of ``datetime`` in every loaded module."""

    @classmethod
    def now(cls, tz: tzinfo | None = None) -> _FrozenDatetime:
        return cls.fromtimestamp(FROZEN.timestamp(), tz)


def test_a_patched_datetime_in_the_module_is_the_default_clocks_time(monkeypatch: pytest.MonkeyPatch) -> None:
    # a functools.partial of datetime.now (a frame less per read) held the real class: a user's
    # freezegun no longer froze the scheduler's clock
    monkeypatch.setattr(records, "datetime", _FrozenDatetime)
    assert utcnow() == FROZEN


def test_the_default_clock_is_aware_and_utc() -> None:
    now = utcnow()
    assert now.tzinfo is UTC
