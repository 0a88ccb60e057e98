"""What a cron schedule in a time zone does when the clocks change: a wall time that occurs
twice (autumn) or never (spring).

A spec's ``"dst": {"repeated": "first" | "last" | "both", "skipped": "skip" | "shift"}``:
``repeated`` fires a repeated wall time at its first occurrence, its second, or both;
``skipped`` leaves out a wall time the clocks jump over, or fires it shifted forward by the
jump (02:30 on a night that goes from 02:00 to 03:00 fires at 03:30, unless 03:30 fires
anyway). Without one, APScheduler's behaviour holds, which is :data:`DEFAULT`.

Fire times are found by walking the cron's wall times (the cron evaluated as if the zone had
no offsets) and turning each into 0, 1 or 2 instants by the policy. Away from a transition
the plain trigger's answer is the same, and it is used.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, NamedTuple

from backbeat.errors import InvalidTriggerError

REPEATED = ("first", "last", "both")
SKIPPED = ("skip", "shift")
DEFAULT = {"repeated": "both", "skipped": "shift"}
"""What a cron trigger without ``dst`` does (APScheduler 3's behaviour)."""
REACH = timedelta(hours=3)
"""More than any clock change: how far an instant may lie from its wall time's naive reading."""


class Policy(NamedTuple):
    repeated: str
    skipped: str


def normalize_dst(value: object) -> dict[str, str]:
    """A ``dst`` argument as stored, with both keys.

    Raises:
        InvalidTriggerError: not a dict, an unknown key, or a value not allowed for its key.
    """
    if not isinstance(value, Mapping):
        raise InvalidTriggerError(f"dst must be a dict like {DEFAULT}, got {value!r}")
    unknown = sorted(set(value) - set(DEFAULT))
    if unknown:
        raise InvalidTriggerError(
            f"unknown dst key(s) {', '.join(map(repr, unknown))}: expected 'repeated', 'skipped'"
        )
    policy = {**DEFAULT, **value}
    if policy["repeated"] not in REPEATED:
        raise InvalidTriggerError(
            f"dst repeated={policy['repeated']!r}: expected one of {', '.join(REPEATED)}"
        )
    if policy["skipped"] not in SKIPPED:
        raise InvalidTriggerError(f"dst skipped={policy['skipped']!r}: expected one of {', '.join(SKIPPED)}")
    return {"repeated": str(policy["repeated"]), "skipped": str(policy["skipped"])}


def instants(wall: datetime, zone: tzinfo, policy: Policy) -> list[datetime]:
    """The UTC instants a naive wall time fires at, by ``policy``."""
    early, late = wall.replace(tzinfo=zone, fold=0), wall.replace(tzinfo=zone, fold=1)
    first, second = early.astimezone(UTC), late.astimezone(UTC)
    if first == second:
        return [first]
    if first.astimezone(zone).replace(tzinfo=None) != wall:  # in a gap: fold=0 reads it with the old offset
        return [first] if policy.skipped == "shift" else []
    return {"first": [first], "last": [second], "both": [first, second]}[policy.repeated]


class WallCron:
    """Fire times of a cron trigger whose wall times follow a DST policy.

    ``walls`` is the cron trigger evaluated in UTC (its fire times are the wall times, read
    naively); ``plain`` the same trigger in ``zone``, used away from clock changes.
    """

    def __init__(
        self,
        walls: Any,
        plain: Any,
        zone: tzinfo,
        policy: Policy,
        start: datetime | None,
        end: datetime | None,
    ) -> None:
        self.walls, self.plain, self.zone, self.policy = walls, plain, zone, policy
        self.start, self.end = start, end

    def after(self, moment: datetime) -> datetime | None:
        """The first fire time strictly after ``moment`` (UTC), ``None`` when there is none."""
        floor = moment if self.start is None else max(moment, self.start - timedelta(microseconds=1))
        quick = self._plain_after(floor)
        if quick is not None:
            return quick
        return self._walk_after(floor)

    def _plain_after(self, moment: datetime) -> datetime | None:
        found = self.plain.get_next_fire_time(None, moment + timedelta(microseconds=1))
        if found is None:
            return None
        found = found.astimezone(UTC)
        if found - moment > timedelta(days=2):
            return None
        offsets = {
            t.astimezone(self.zone).utcoffset() for t in (moment - REACH, found - REACH, found + REACH)
        }
        return found if len(offsets) == 1 and self._within(found) else None

    def _walk_after(self, moment: datetime) -> datetime | None:
        wall = self._wall_at_or_after(_naive(moment.astimezone(self.zone)) - REACH)
        best: datetime | None = None
        stop: datetime | None = None
        while wall is not None and (stop is None or wall <= stop):
            for instant in instants(wall, self.zone, self.policy):
                if instant > moment and self._within(instant) and (best is None or instant < best):
                    best = instant
            if best is not None and stop is None:
                stop = wall + 2 * REACH  # a later wall may still fire earlier, around a fold
            if self.end is not None and wall > _naive(self.end.astimezone(self.zone)) + REACH:
                break
            wall = self._wall_at_or_after(wall + timedelta(microseconds=1))
        return best

    def _wall_at_or_after(self, wall: datetime) -> datetime | None:
        found = self.walls.get_next_fire_time(None, wall.replace(tzinfo=UTC))
        return None if found is None else _naive(found)

    def _within(self, instant: datetime) -> bool:
        return (self.start is None or instant >= self.start) and (self.end is None or instant <= self.end)


def _naive(value: datetime) -> datetime:
    return value.replace(tzinfo=None, fold=0)
