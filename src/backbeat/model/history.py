"""Run history: one record per finished run (or missed fire time), kept in the store for a while.

A :class:`HistoryEntry` is plain JSON-able data; :class:`HistoryQuery` says which entries a
store returns, newest first, and :func:`encode_cursor` / :func:`decode_cursor` spell the
position a page ends at (its last entry's end time and id), the same for every store.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from backbeat.errors import CorruptRecordError

JSON = Any

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


class HistoryOutcome(enum.StrEnum):
    """How a recorded run ended."""

    SUCCESS = "success"
    FAILURE = "failure"
    """Failed for good, not dead-lettered (a recurring task without a retry policy)."""
    RETRY_SCHEDULED = "retry_scheduled"
    """Failed; the retry policy re-queued it (the next attempt is another entry)."""
    DEAD_LETTERED = "dead_lettered"
    MISSED = "missed"
    """Its fire time was older than the task's ``catchup_window`` (``misfire_grace_time``): it never ran."""
    COALESCED = "coalesced"
    """Its fire time was folded into the run of a later one (``coalesce=True``): no run of its own."""
    SKIPPED = "skipped"
    """Its fire time came while another run of the task was going and the task's overlap
    policy refused it: it never ran."""
    CANCELLED = "cancelled"
    LOST_LEASE = "lost_lease"
    """Stopped here because its lease could not be renewed in time, or not started because its
    lease ended while the store was slow to answer the claim (another owner may run it)."""
    LOST = "lost"
    """An at-most-once run whose owner died mid-run: not run again."""
    ORPHANED = "orphaned"


FAILED = frozenset({HistoryOutcome.FAILURE, HistoryOutcome.RETRY_SCHEDULED, HistoryOutcome.DEAD_LETTERED})
"""The outcomes ``--failed`` means: the job raised (or timed out)."""


@dataclass(slots=True, kw_only=True)
class HistoryEntry:
    """One finished run (or a missed fire time) of one task."""

    id: str
    """Unique and deterministic (see :func:`entry_id`): recording it twice with the same end
    keeps one (with another end, see ``Store.record_history``)."""
    task_id: str
    task_name: str
    run_id: str
    fire_time: datetime
    ended_at: datetime
    outcome: HistoryOutcome
    attempt: int = 1
    started_at: datetime | None = None
    """``None`` when the job never started (missed, cancelled before it ran)."""
    error_type: str | None = None
    error: str | None = None
    """The error's message, truncated."""
    owner: str | None = None
    """The engine that ran it (``host:pid:suffix``)."""
    args: JSON = None
    """The task's stored (encoded) arguments, only when the user opted in."""

    @property
    def duration(self) -> float | None:
        """Seconds from start to end, ``None`` if it never started."""
        return None if self.started_at is None else (self.ended_at - self.started_at).total_seconds()

    @property
    def host(self) -> str | None:
        return None if self.owner is None else self.owner.split(":", 1)[0]

    @property
    def pid(self) -> int | None:
        parts = (self.owner or "").split(":")
        return int(parts[1]) if len(parts) > 2 and parts[1].isdigit() else None

    def to_document(self) -> dict[str, JSON]:
        return {
            "id": self.id,
            "task_id": self.task_id,
            "task_name": self.task_name,
            "run_id": self.run_id,
            "fire_time": _iso(self.fire_time),
            "started_at": _iso(self.started_at) if self.started_at else None,
            "ended_at": _iso(self.ended_at),
            "duration": self.duration,
            "outcome": str(self.outcome),
            "attempt": self.attempt,
            "error_type": self.error_type,
            "error": self.error,
            "owner": self.owner,
            "host": self.host,
            "pid": self.pid,
            "args": self.args,
        }

    def to_bytes(self) -> bytes:
        """The stored form, read back by :meth:`from_bytes` given the entry's id (every store
        keeps the id beside the document): :meth:`to_document`'s fields without the id, the
        derived ones (duration, host, pid), the run id and task id when the id spells them
        (``<task id>@<fire time>#...``), an attempt of 1 and those that are ``None``; times in
        epoch microseconds. About 150 bytes for a run that succeeded, where the first form, with
        ISO times and the ids, took 350."""
        return orjson.dumps(
            stored_document(
                task_name=self.task_name,
                task_id=self.task_id,
                run_id=self.run_id,
                spelled_run_id=self.id.rsplit("#", 2)[0],
                fire_us=to_us(self.fire_time),
                ended_us=to_us(self.ended_at),
                outcome=self.outcome,
                attempt=self.attempt,
                started_at=self.started_at,
                error_type=self.error_type,
                error=self.error,
                owner=self.owner,
                args=self.args,
            )
        )

    @classmethod
    def from_document(
        cls,
        doc: Mapping[str, JSON],
        entry_id: str | None = None,
        ended_us: int | None = None,
        owner: str | None = None,
    ) -> HistoryEntry:
        """Rebuild an entry from :meth:`to_document`'s output, or from a stored document and
        the id it is stored under (documents written before :meth:`to_bytes` left the id out
        hold it, and ISO times). A stored document may leave out what its store keeps beside
        it: the end (``ended_us``, from the store's index), the outcome (the id's last part),
        the fire time (the run id's, ``<task id>@<ISO fire time>``) and the owner (``owner``,
        one for a batch of entries).

        Raises:
            CorruptRecordError: the document is not a valid history entry.
        """
        try:
            started = doc.get("started_at")
            entry_id = str(doc["id"]) if entry_id is None else entry_id
            stored_run_id = doc.get("run_id")
            run_id = entry_id.rsplit("#", 2)[0] if stored_run_id is None else str(stored_run_id)
            task_id = doc.get("task_id")
            return cls(
                id=entry_id,
                task_id=run_id.rpartition("@")[0] if task_id is None else str(task_id),
                task_name=str(doc["task_name"]),
                run_id=run_id,
                fire_time=_parse(doc["fire_time"] if "fire_time" in doc else run_id.rpartition("@")[2]),
                started_at=_parse(started) if started is not None else None,
                ended_at=_parse(doc["ended_at"] if ended_us is None or "ended_at" in doc else ended_us),
                outcome=HistoryOutcome(doc["outcome"] if "outcome" in doc else entry_id.rpartition("#")[2]),
                attempt=int(doc.get("attempt", 1)),
                error_type=doc.get("error_type"),
                error=doc.get("error"),
                owner=doc.get("owner", owner),
                args=doc.get("args"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptRecordError(f"stored history entry is not valid: {exc!r}") from exc

    @classmethod
    def from_bytes(
        cls,
        raw: bytes | str,
        entry_id: str | None = None,
        ended_us: int | None = None,
        owner: str | None = None,
    ) -> HistoryEntry:
        """Read a stored document, given the id it is stored under (one that holds its id, of
        the first form, needs none) and what a store keeps beside a document that leaves it out:
        its end and its batch's owner (:meth:`from_document`).

        Raises:
            CorruptRecordError: ``raw`` is not an entry's JSON.
        """
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise CorruptRecordError(f"stored history entry is not valid JSON: {exc}") from exc
        if not isinstance(doc, dict):
            raise CorruptRecordError("stored history entry is not a JSON object")
        return cls.from_document(doc, entry_id, ended_us, owner)


def stored_document(
    *,
    task_name: str,
    task_id: str,
    run_id: str,
    spelled_run_id: str,
    fire_us: int,
    ended_us: int,
    outcome: HistoryOutcome,
    attempt: int,
    started_at: datetime | None,
    error_type: str | None,
    error: str | None,
    owner: str | None,
    args: JSON,
) -> dict[str, JSON]:
    """An entry's stored document (:meth:`HistoryEntry.to_bytes`, and the stores that build it
    from a completed run): the run id only when the entry id does not spell it
    (``spelled_run_id``), the task id only when the run id does not, no attempt of 1 and no
    field that is ``None``."""
    doc: dict[str, JSON] = {
        "task_name": task_name,
        "fire_time": fire_us,
        "ended_at": ended_us,
        "outcome": outcome,
    }
    if spelled_run_id != run_id:
        doc["run_id"] = run_id
    if run_id.rpartition("@")[0] != task_id:
        doc["task_id"] = task_id
    if attempt != 1:
        doc["attempt"] = attempt
    if started_at is not None:
        doc["started_at"] = to_us(started_at)
    if error_type is not None:
        doc["error_type"] = error_type
    if error is not None:
        doc["error"] = error
    if owner is not None:
        doc["owner"] = owner
    if args is not None:
        doc["args"] = args
    return doc


def refuse_ends_before_1970(entries: Iterable[HistoryEntry]) -> None:
    """Refuse a batch of entries to record if one ended before 1970 (every store's
    ``record_history`` calls it before writing any): the Redis store's index spells an end in 18
    digits of microseconds since 1970, and one rule for all stores keeps history movable. Such an
    end comes only from an injected clock or a system clock set wrong; a completion leaves its
    entry out instead (:func:`.completed_entry`).

    Raises:
        ValueError: an entry ended before 1970 (the error names it).
    """
    for entry in entries:
        if entry.ended_at < EPOCH:
            raise ValueError(
                f"history entry {entry.id!r} ended at {entry.ended_at.isoformat()}, before 1970: "
                "no store keeps an entry that ended before 1970"
            )


def entry_id(run_id: str, attempt: int, outcome: HistoryOutcome, token: int = 0) -> str:
    """The id of a history entry: ``<run id>#<attempt>[.<fencing token>]#<outcome>``. The token
    of the lease it ran under tells apart two executions of one fire time with the same attempt
    (a dead letter run again, a backfill of a fire time that ran); a fire time that never ran
    (missed, skipped, coalesced) has none, so deciding it again records it once."""
    return f"{run_id}#{attempt}.{token}#{outcome}" if token else f"{run_id}#{attempt}#{outcome}"


@dataclass(slots=True, frozen=True)
class HistoryQuery:
    """Which entries ``Store.run_history`` returns: newest first (by end time, then id), every
    given field matching, at most ``limit``, after ``cursor`` (a previous page's next cursor)."""

    task_id: str | None = None
    outcomes: frozenset[HistoryOutcome] | None = None
    since: datetime | None = None
    """Only entries that ended at or after this time."""
    limit: int = 100
    cursor: str | None = None

    def __post_init__(self) -> None:
        if self.limit < 1:
            raise ValueError(f"limit must be at least 1, not {self.limit}")
        if self.cursor is not None:
            decode_cursor(self.cursor)

    def after(self) -> tuple[int, str] | None:
        """The cursor as (end time in epoch microseconds, entry id)."""
        return None if self.cursor is None else decode_cursor(self.cursor)

    def matches(self, entry: HistoryEntry) -> bool:
        """Whether ``entry`` passes the filters and lies after the cursor."""
        if self.task_id is not None and entry.task_id != self.task_id:
            return False
        if self.outcomes is not None and entry.outcome not in self.outcomes:
            return False
        if self.since is not None and entry.ended_at < self.since:
            return False
        after = self.after()
        return after is None or (to_us(entry.ended_at), entry.id) < after


@dataclass(slots=True, frozen=True)
class HistorySettings:
    """What the engine records and how long the store keeps it: entries older than
    ``retention`` go, and a task keeps its newest ``per_task``. Pruned a task at a time as the
    engine records (every ``per_task // 10`` entries of a task), plus a bounded batch of old
    entries of any task now and then, never by reading everything."""

    retention: timedelta = timedelta(days=7)
    per_task: int = 1000
    record_args: bool = False
    """Also keep the task's stored (encoded) ``args``, ``kwargs`` and ``data`` in each entry."""
    message_limit: int = 500
    """Characters of an error message kept."""

    def __post_init__(self) -> None:
        if not isinstance(self.retention, timedelta) or self.retention <= timedelta(0):
            raise ValueError(f"history_retention must be a positive timedelta, not {self.retention!r}")
        if not isinstance(self.per_task, int) or self.per_task < 1:
            raise ValueError(f"history_per_task must be an integer >= 1, not {self.per_task!r}")
        if self.message_limit < 0:
            raise ValueError(f"message_limit must be >= 0, not {self.message_limit!r}")

    @property
    def prune_every(self) -> int:
        """Entries of one task recorded between two prunings of it."""
        return max(self.per_task // 10, 1)


PRUNE_BATCH = 1000
"""Entries of any task past their age that one ``Store.prune_history`` call removes, about (the
Redis store removes whole windows of 10 ms, a few more; a sharded store this many from each
shard): a call that removes this many may have left more behind."""

CURSOR_PATTERN = r"^[0-9]{1,18}:[^\x00]+$"
"""What a cursor looks like (end time in epoch microseconds, ``:``, the last entry's id)."""


def encode_cursor(entry: HistoryEntry) -> str:
    """The cursor of the page that ends with ``entry``."""
    return f"{to_us(entry.ended_at)}:{entry.id}"


def decode_cursor(cursor: str) -> tuple[int, str]:
    """Raises ``ValueError`` when ``cursor`` was not made by :func:`encode_cursor`."""
    micros, sep, last_id = cursor.partition(":")
    if (
        not sep
        or not micros.isascii()
        or not micros.isdigit()
        or len(micros) > 18
        or not last_id
        or "\0" in last_id
    ):
        raise ValueError(f"cursor {cursor!r} is not a cursor returned by run_history")
    return int(micros), last_id


def to_us(value: datetime) -> int:
    return (value - EPOCH) // _US


def from_us(value: int) -> datetime:
    return EPOCH + timedelta(microseconds=value)


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat()


def _parse(value: object) -> datetime:
    """A stored time: epoch microseconds, or an ISO string (documents of the first form)."""
    if type(value) is int:
        return from_us(value)
    if not isinstance(value, str):
        raise TypeError(f"expected epoch microseconds or an ISO datetime string, got {type(value).__name__}")
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@dataclass(slots=True, frozen=True)
class HistoryPage:
    """One page of run history, newest first, and the cursor of the next (``None``: last page)."""

    entries: list[HistoryEntry]
    next_cursor: str | None


__all__ = [
    "FAILED",
    "HistoryEntry",
    "HistoryOutcome",
    "HistoryPage",
    "HistoryQuery",
    "HistorySettings",
    "decode_cursor",
    "encode_cursor",
    "entry_id",
    "refuse_ends_before_1970",
    "stored_document",
]
