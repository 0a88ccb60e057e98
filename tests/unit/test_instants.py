"""The ISO spelling of epoch microseconds and the seconds it keeps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from backbeat.model import instants
from backbeat.model.instants import iso_us, to_us

NOW = datetime(2026, 12, 7, 11, 0, 0, 123456, tzinfo=UTC)


def test_interleaved_seconds_are_each_spelled_once_and_kept() -> None:
    # a worker firing runs due now while it adds one-shots for in five minutes, its tasks made
    # an hour ago: one kept second was spelled again at each switch
    times = [NOW, NOW + timedelta(minutes=5), NOW - timedelta(hours=1)]
    instants._seconds.clear()
    for at in times * 3:
        assert iso_us(to_us(at)) == at.isoformat()
    spelled = sorted(at.replace(microsecond=0, tzinfo=None).isoformat() for at in times)
    assert sorted(instants._seconds.values()) == spelled


def test_the_seconds_kept_are_bounded() -> None:
    for second in range(1_000):
        assert iso_us((to_us(NOW) // 1_000_000 + second) * 1_000_000).startswith("2026-12-07")
    assert len(instants._seconds) <= instants._SECONDS_KEPT
