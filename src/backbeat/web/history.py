"""A bounded in-memory ring of recent run outcomes, fed by a scheduler's events.

backbeat's stores keep no run history (a run row is deleted when it completes; a task keeps
only counters and its last outcome), so the dashboard's history is what the scheduler it is
mounted in executed since it started, in this process only.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from backbeat.model.events import EventHub, EventKind, SchedulerEvent

OUTCOMES = {
    EventKind.RUN_EXECUTED: "success",
    EventKind.RUN_FAILED: "failure",
    EventKind.RUN_MISSED: "missed",
    EventKind.RUN_LOST: "lost",
    EventKind.RUN_DEFERRED: "deferred",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class HistoryEntry:
    """One run outcome this process saw."""

    outcome: str
    task_id: str | None
    task_name: str | None
    run_id: str | None
    fire_time: datetime | None
    attempt: int | None
    finished_at: datetime
    duration: float | None
    """Seconds the run took (``None`` for a run that did not execute: missed, lost, deferred)."""
    error: str | None

    @classmethod
    def of(cls, event: SchedulerEvent) -> HistoryEntry:
        error = None if event.error is None else f"{type(event.error).__name__}: {event.error}"
        return cls(
            outcome=OUTCOMES[event.kind],
            task_id=event.task_id,
            task_name=event.task_name,
            run_id=event.run_id,
            fire_time=event.fire_time,
            attempt=event.attempt,
            finished_at=event.timestamp,
            duration=event.duration,
            error=error,
        )


class RunHistory:
    """The last ``capacity`` run outcomes of one scheduler, newest first."""

    def __init__(self, capacity: int = 500) -> None:
        self.capacity = capacity
        self._entries: deque[HistoryEntry] = deque(maxlen=capacity)
        self._detach: Callable[[], None] | None = None

    def attach(self, events: EventHub) -> None:
        """Listen to ``events`` (a scheduler's ``events``) until :meth:`detach`."""
        self.detach()
        self._detach = events.add_listener(self.record, list(OUTCOMES))

    def detach(self) -> None:
        """Stop listening."""
        if self._detach is not None:
            self._detach()
            self._detach = None

    def record(self, event: SchedulerEvent) -> None:
        """Keep one run event (other kinds are ignored)."""
        if event.kind in OUTCOMES:
            self._entries.append(HistoryEntry.of(event))

    def entries(self, limit: int | None = None) -> list[HistoryEntry]:
        """Newest first, at most ``limit``."""
        newest = list(reversed(self._entries))
        return newest if limit is None else newest[:limit]
