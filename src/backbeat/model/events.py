"""Scheduler events, delivered to plain listeners and as a reactivex stream."""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from reactivex import Observable
from reactivex.subject import Subject

log = logging.getLogger(__name__)


class EventKind(enum.StrEnum):
    """What happened."""

    SCHEDULER_STARTED = "scheduler_started"
    SCHEDULER_SHUTDOWN = "scheduler_shutdown"
    TASK_ADDED = "task_added"
    TASK_MODIFIED = "task_modified"
    TASK_REMOVED = "task_removed"
    TASK_ORPHANED = "task_orphaned"
    RUN_SUBMITTED = "run_submitted"
    RUN_EXECUTED = "run_executed"
    RUN_FAILED = "run_failed"
    RUN_MISSED = "run_missed"
    """A fire time older than the task's catch-up window (``misfire_grace_time``): not run."""
    RUN_COALESCED = "run_coalesced"
    """A fire time folded into the run of a later one (``coalesce=True``): not run on its own."""
    RUN_LOST = "run_lost"
    RUN_LEASE_LOST = "run_lease_lost"
    """A run stopped here because its lease could not be renewed in time, or not started because
    its lease ended while the store was slow to answer the claim (another owner may run it)."""
    RUN_DEFERRED = "run_deferred"
    RUN_SKIPPED = "run_skipped"
    """A fire time the task's overlap policy refused (``skip``, a full buffer): not run."""
    MAX_INSTANCES = "max_instances"
    """A fire time not run because ``max_instances`` runs of the task were going (``allow_all``)."""
    STORE_ERROR = "store_error"


@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerEvent:
    """One event; fields that do not apply to its kind are ``None``."""

    kind: EventKind
    task_id: str | None = None
    task_name: str | None = None
    run_id: str | None = None
    fire_time: datetime | None = None
    attempt: int | None = None
    result: Any = None
    error: BaseException | None = None
    traceback: str | None = None
    duration: float | None = None
    timestamp: datetime = field(default_factory=lambda: datetime.now(UTC))


Listener = Callable[[SchedulerEvent], object]


class EventHub:
    """Fans events out to listeners and to ``stream``; a failing listener never stops the others."""

    def __init__(self) -> None:
        self._listeners: list[tuple[Listener, frozenset[EventKind] | None]] = []
        self._subject: Subject[SchedulerEvent] = Subject()
        self._kinds: frozenset[EventKind] | None = frozenset()
        """The kinds some listener takes (``None``: every kind)."""

    @property
    def stream(self) -> Observable[SchedulerEvent]:
        """All events as a reactivex observable (``scheduler.events.subscribe(...)``)."""
        return self._subject

    def add_listener(
        self, listener: Listener, kinds: Collection[EventKind] | None = None
    ) -> Callable[[], None]:
        """Call ``listener(event)`` for events of ``kinds`` (all when ``None``); returns an unsubscribe."""
        entry = (listener, frozenset(kinds) if kinds is not None else None)
        self._listeners.append(entry)
        self._count_kinds()

        def remove() -> None:
            if entry in self._listeners:
                self._listeners.remove(entry)
                self._count_kinds()

        return remove

    def _count_kinds(self) -> None:
        taken: set[EventKind] = set()
        for _, kinds in self._listeners:
            if kinds is None:
                self._kinds = None
                return
            taken |= kinds
        self._kinds = frozenset(taken)

    @property
    def wanted(self) -> bool:
        """Whether anyone listens (so the engine can skip building events nobody reads)."""
        return bool(self._listeners) or bool(self._subject.observers)

    def wants(self, kind: EventKind) -> bool:
        """Whether anyone listens to events of ``kind``: a listener of only some kinds (the
        metrics' of fire times not run) does not make every run build its events."""
        kinds = self._kinds  # asked twice per run: kept cheap
        # ``kind in kinds`` hashes the enum member through a slot wrapper even for an empty set
        return kinds is None or (bool(kinds) and kind in kinds) or bool(self._subject.observers)

    def emit(self, event: SchedulerEvent) -> None:
        for listener, kinds in tuple(self._listeners):
            if kinds is None or event.kind in kinds:
                try:
                    listener(event)
                except Exception:
                    log.exception("event listener %r failed on %s", listener, event.kind)
        try:
            self._subject.on_next(event)
        except Exception:
            log.exception("event stream subscriber failed on %s", event.kind)
