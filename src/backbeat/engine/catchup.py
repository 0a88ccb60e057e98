"""Which due fire times of a task run after a delay (downtime, a backlog), which are coalesced
into another run and which are missed: the catch-up rule, kept apart from the claim loop."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime


@dataclass(slots=True)
class CatchUp:
    """The due fire times of one task, split three ways (each ascending; none coalesced or
    missed is an empty tuple, not a new list: every fire splits its due times)."""

    run: list[datetime] = field(default_factory=list)
    """Fire times that run (each its own run)."""
    coalesced: Sequence[datetime] = ()
    """Fire times inside the window folded into the run of the latest one (``coalesce=True``)."""
    missed: Sequence[datetime] = ()
    """Fire times older than the window (``catchup_window`` / ``misfire_grace_time``): never run."""


def split_due(due: list[datetime], now: datetime, *, window: float | None, coalesce: bool) -> CatchUp:
    """Split ``due`` (ascending) by the catch-up window (seconds; ``None``: no bound).

    The window is applied first, so a coalesced run is always one whose fire time lies inside
    it, and the fire times it stands for are reported (``coalesced``) rather than dropped.
    """
    if len(due) == 1:  # the common case, on every fire: keep it cheap
        if window is None or (now - due[0]).total_seconds() <= window:
            return CatchUp(run=due)
        return CatchUp(missed=due)
    inside = [t for t in due if window is None or (now - t).total_seconds() <= window]
    missed = due[: len(due) - len(inside)] if inside else list(due)
    if coalesce and len(inside) > 1:
        return CatchUp(run=inside[-1:], coalesced=inside[:-1], missed=missed)
    return CatchUp(run=inside, missed=missed)
