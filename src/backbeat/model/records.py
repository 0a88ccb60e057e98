"""What is stored: tasks (schedules) and runs (one execution of one fire time).

Everything here is plain data. ``Task.args``, ``Task.kwargs`` and ``Task.data`` hold the
*encoded* form made by :mod:`backbeat.codec` (JSON types only), so a store never sees a
Python object of the user's and can save a task with one ``orjson.dumps``.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from backbeat.errors import CorruptRecordError
from backbeat.model.overlap import BUFFERED_UNTIL, Overlap

JSON = Any
"""A value made only of dict, list, str, int, float, bool and None."""

OVERLAPS = frozenset(Overlap)
"""The overlap policies a stored task may name."""


class RunOutcome(enum.StrEnum):
    """How a run ended."""

    SUCCESS = "success"
    FAILURE = "failure"
    MISSED = "missed"  # its fire time was later than misfire_grace_time allows
    LOST = "lost"  # at-most-once task whose owner died mid-run: not re-run
    CANCELLED = "cancelled"
    ORPHANED = "orphaned"  # the job it names is not registered in the process that claimed it
    DEFERRED = "deferred"  # not run now (its circuit breaker is open): re-queued, same attempt


@dataclass(slots=True, kw_only=True)
class TaskOptions:
    """How the engine treats a task's fire times (APScheduler's vocabulary)."""

    misfire_grace_time: float | None = 1.0
    """Seconds a fire time may be late and still run; ``None`` runs it however late."""
    coalesce: bool = True
    """Run once for several fire times that are due together."""
    max_instances: int = 1
    """Runs of this task that may exist at once, counted across every process."""
    timeout: float | None = None
    """Seconds a run may take before it is cancelled (asyncio executor)."""
    at_most_once: bool = False
    """Do not re-run a fire time whose owner died mid-run (mark it lost instead)."""
    executor: str = "default"
    """Name of the executor that runs this task."""
    retry: dict[str, JSON] | None = None
    """A ``RetryPolicy`` as JSON: failed runs are re-queued in the store, then dead-lettered."""
    circuit_breaker: dict[str, JSON] | None = None
    """A ``CircuitBreakerPolicy`` as JSON; its state is shared through the store."""
    overlap: str = "allow_all"
    """What a fire time does while a run of the task is going (see :class:`backbeat.Overlap`)."""

    def to_json(self) -> dict[str, JSON]:
        return {
            "misfire_grace_time": self.misfire_grace_time,
            "coalesce": self.coalesce,
            "max_instances": self.max_instances,
            "timeout": self.timeout,
            "at_most_once": self.at_most_once,
            "executor": self.executor,
            "retry": self.retry,
            "circuit_breaker": self.circuit_breaker,
            "overlap": self.overlap,
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, JSON]) -> TaskOptions:
        """Options from :meth:`to_json`'s output.

        Raises:
            ValueError: an overlap policy this version does not know (a record written by a
                newer one: decoding it fails, so it is quarantined rather than misread).
        """
        if doc.keys() <= _OPTION_FIELDS:  # the common case, without building a copy
            options = cls(**doc)
        else:
            options = cls(**{k: doc[k] for k in cls.__dataclass_fields__ if k in doc})
        if options.overlap not in OVERLAPS:
            raise ValueError(f"unknown overlap policy {options.overlap!r}")
        return options


_OPTION_FIELDS = frozenset(TaskOptions.__dataclass_fields__)


@dataclass(slots=True, kw_only=True)
class Task:
    """A persisted schedule: which job to run, with what data, and when."""

    id: str
    name: str
    """Human name of the task (``"order_preparation_reminder"``)."""
    job: str
    """Registry reference of what runs (see :mod:`backbeat.registry`)."""
    trigger: dict[str, JSON]
    """JSON trigger spec (see :mod:`backbeat.triggers`)."""
    next_run_time: datetime | None
    args: list[JSON] = field(default_factory=list)
    kwargs: dict[str, JSON] = field(default_factory=dict)
    data: dict[str, JSON] | None = None
    """Business data of a ``@backgroundjob`` class instance (its attributes)."""
    tags: tuple[str, ...] = ()
    options: TaskOptions = field(default_factory=TaskOptions)
    paused: bool = False
    orphaned: str | None = None
    """Why this process cannot run the task (its job is not registered); kept, not deleted."""
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    version: int = 0
    """Bumped by every change made through ``Store.update``; fire() keeps a user's newer change."""
    running: int = 0
    """Runs of this task now in the store (leased, waiting or retrying): what max_instances caps.
    Runs left by an earlier task of the same id, removed while they went on, are not counted."""
    runs: int = 0
    failures: int = 0
    last_outcome: str | None = None
    last_run_at: datetime | None = None
    trace_context: dict[str, str] | None = None

    def to_document(self) -> dict[str, JSON]:
        """This task as a JSON document (datetimes as ISO strings)."""
        return {
            "id": self.id,
            "name": self.name,
            "job": self.job,
            "trigger": self.trigger,
            "next_run_time": _iso(self.next_run_time),
            "args": self.args,
            "kwargs": self.kwargs,
            "data": self.data,
            "tags": list(self.tags),
            "options": self.options.to_json(),
            "paused": self.paused,
            "orphaned": self.orphaned,
            "created_at": _iso(self.created_at),
            "version": self.version,
            "running": self.running,
            "runs": self.runs,
            "failures": self.failures,
            "last_outcome": self.last_outcome,
            "last_run_at": _iso(self.last_run_at),
            "trace_context": self.trace_context,
        }

    def to_bytes(self) -> bytes:
        return orjson.dumps(self.to_document())

    @classmethod
    def from_document(cls, doc: Mapping[str, JSON]) -> Task:
        """Rebuild a task from :meth:`to_document`'s output.

        Raises:
            CorruptRecordError: the document is not a valid task (missing or mistyped field).
        """
        get = doc.get  # every lookup below is one call less: this runs once per claimed task
        try:
            options, data, created = get("options"), get("data"), get("created_at")
            return cls(
                id=str(doc["id"]),
                name=str(doc["name"]),
                job=str(doc["job"]),
                trigger=dict(doc["trigger"]),
                next_run_time=_parse_iso(get("next_run_time")),
                args=list(get("args") or ()),
                kwargs=dict(get("kwargs") or ()),
                data=None if data is None else dict(data),
                tags=tuple(get("tags") or ()),
                options=TaskOptions.from_json(options) if options else TaskOptions(),
                paused=bool(get("paused", False)),
                orphaned=get("orphaned"),
                created_at=datetime.now(UTC) if created is None else _parse_iso(created) or datetime.now(UTC),
                version=int(get("version", 0)),
                running=int(get("running", 0)),
                runs=int(get("runs", 0)),
                failures=int(get("failures", 0)),
                last_outcome=get("last_outcome"),
                last_run_at=_parse_iso(get("last_run_at")),
                trace_context=get("trace_context"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            task_id = doc.get("id", "?") if isinstance(doc, Mapping) else "?"
            raise CorruptRecordError(f"task {task_id!r} is not a valid task document: {exc!r}") from exc

    @classmethod
    def from_bytes(cls, raw: bytes | str) -> Task:
        """Parse a stored task.

        Raises:
            CorruptRecordError: ``raw`` is not JSON or not a task document.
        """
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise CorruptRecordError(f"stored task is not valid JSON: {exc}") from exc
        if not isinstance(doc, dict):
            raise CorruptRecordError(f"stored task is a {type(doc).__name__}, not a JSON object")
        return cls.from_document(doc)

    def copy(self, **changes: Any) -> Task:
        return replace(self, **changes)


def run_id_for(task_id: str, fire_time: datetime) -> str:
    """The idempotency key of one fire time of one task: ``task_id@fire_time``."""
    return f"{task_id}@{fire_time.astimezone(UTC).isoformat()}"


@dataclass(slots=True, kw_only=True)
class Run:
    """One execution of one fire time of a task.

    A run is *leased* while ``owner`` is set and ``lease_until`` is in the future. A run whose
    owner is ``None`` is *waiting* (a retry, a trigger-now, a released run) and is claimable
    once ``lease_until`` has passed. An owned run whose lease expired is claimable too: its
    owner is presumed dead, and the next claim increments ``attempt``.
    """

    id: str
    task_id: str
    fire_time: datetime
    attempt: int = 1
    owner: str | None = None
    lease_until: datetime
    task: Task | None = None
    """Snapshot of the task, filled in by claims so the engine needs no second read."""
    recovered: bool = False
    """This claim took the run over from an owner whose lease expired."""
    fencing_token: int = 0
    """Set by the store each time it leases the run to a holder (a fire, a claim of a waiting
    run, a takeover): greater than every token the run had before, and than every token the
    store handed out before for any run it keeps in the same place (a shard of a sharded
    store, else the whole store); never the token of another run. The store completes,
    extends and releases a run only for the holder of its current token; a job passes it to
    downstream writes so they can refuse an older holder's. A waiting run keeps its last
    holder's token; 0 if it never had one."""
    detached: bool = False
    """Left by a task removed while it existed (see ``Store.remove``): it belongs to that
    incarnation, never to a task added again under its id. Reported by ``list_runs``."""

    @property
    def buffered(self) -> bool:
        """Waiting behind a running run of its task (overlap ``buffer_*``/``cancel_other``)."""
        return self.owner is None and self.lease_until >= BUFFERED_UNTIL

    def to_document(self) -> dict[str, JSON]:
        return {
            "id": self.id,
            "task_id": self.task_id,
            "fire_time": _iso(self.fire_time),
            "attempt": self.attempt,
            "owner": self.owner,
            "lease_until": _iso(self.lease_until),
            "fencing_token": self.fencing_token,
        }

    @classmethod
    def from_document(cls, doc: Mapping[str, JSON], task: Task | None = None) -> Run:
        """Rebuild a run from :meth:`to_document`'s output.

        Raises:
            CorruptRecordError: the document is not a valid run.
        """
        try:
            fire_time = _parse_iso(doc["fire_time"])
            lease_until = _parse_iso(doc["lease_until"])
            if fire_time is None or lease_until is None:
                raise ValueError("fire_time and lease_until are required")
            return cls(
                id=str(doc["id"]),
                task_id=str(doc["task_id"]),
                fire_time=fire_time,
                attempt=int(doc.get("attempt", 1)),
                owner=doc.get("owner"),
                lease_until=lease_until,
                task=task,
                fencing_token=int(doc.get("fencing_token", 0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptRecordError(f"stored run is not valid: {exc!r}") from exc


@dataclass(slots=True, kw_only=True)
class FireDecision:
    """What the engine decided for a claimed task: which fire times to run, and what comes next."""

    task_id: str
    claimed_version: int
    fire_times: list[datetime]
    next_run_time: datetime | None
    missed: int = 0
    """Fire times skipped for lateness (reported, not run)."""
    overlap: str = "allow_all"
    """The task's overlap policy as claimed: how ``fire`` admits each fire time (see
    :func:`backbeat.model.overlap.admit`)."""


@dataclass(slots=True, kw_only=True)
class FireResult:
    """What ``Store.fire`` did with one decision."""

    task_id: str
    runs: list[Run]
    skipped: list[datetime] = field(default_factory=list)
    """Fire times refused by the overlap policy (``max_instances`` runs, or a run, existed)."""
    buffered: list[Run] = field(default_factory=list)
    """Runs created waiting behind a running run of the task (claimable once it ends)."""
    removed: bool = False
    """The task had nothing left to run and was removed (a one-shot whose time was missed)."""


@dataclass(slots=True, kw_only=True)
class RunResult:
    """How a run ended, handed to ``Store.complete``."""

    run: Run
    outcome: RunOutcome
    finished_at: datetime
    error: str | None = None
    """``"ExceptionType: message"`` of a failed run."""
    error_type: str | None = None
    """Qualified name of the exception class of a failed run."""
    traceback: str | None = None
    retry_at: datetime | None = None
    """Keep the run and make it claimable again at this time (attempt + 1; same attempt when
    the outcome is ``DEFERRED``)."""
    dead_letter: bool = False
    """Keep the failed run as a :class:`DeadLetter` instead of forgetting it."""
    started_at: datetime | None = None
    """When its job started (``None``: it never did), for its run history entry."""


@dataclass(slots=True)
class Claim:
    """What one ``Store.claim_due`` call took for its owner."""

    tasks: list[Task] = field(default_factory=list)
    """Due tasks, now leased to the owner until it calls ``fire``."""
    runs: list[Run] = field(default_factory=list)
    """Waiting runs and runs whose owner's lease expired, now leased to the owner."""

    def __bool__(self) -> bool:
        return bool(self.tasks or self.runs)


@dataclass(slots=True, kw_only=True)
class DeadLetter:
    """A run that failed its last attempt, kept for inspection, re-running or removal."""

    id: str
    """The run's id (its idempotency key)."""
    task_id: str
    fire_time: datetime
    attempt: int
    failed_at: datetime
    error: str | None = None
    error_type: str | None = None
    traceback: str | None = None
    task: Task | None = None
    """The task as it was when the run failed (a one-shot task is gone from the store)."""

    @classmethod
    def of(cls, result: RunResult, task: Task | None) -> DeadLetter:
        run = result.run
        return cls(
            id=run.id,
            task_id=run.task_id,
            fire_time=run.fire_time,
            attempt=run.attempt,
            failed_at=result.finished_at,
            error=result.error,
            error_type=result.error_type,
            traceback=result.traceback,
            task=task,
        )

    def to_document(self) -> dict[str, JSON]:
        return {
            "id": self.id,
            "task_id": self.task_id,
            "fire_time": _iso(self.fire_time),
            "attempt": self.attempt,
            "failed_at": _iso(self.failed_at),
            "error": self.error,
            "error_type": self.error_type,
            "traceback": self.traceback,
            "task": self.task.to_document() if self.task is not None else None,
        }

    @classmethod
    def from_document(cls, doc: Mapping[str, JSON]) -> DeadLetter:
        """Rebuild a dead letter from :meth:`to_document`'s output.

        Raises:
            CorruptRecordError: the document is not a valid dead letter.
        """
        try:
            fire_time = _parse_iso(doc["fire_time"])
            failed_at = _parse_iso(doc["failed_at"])
            if fire_time is None or failed_at is None:
                raise ValueError("fire_time and failed_at are required")
            task_doc = doc.get("task")
            return cls(
                id=str(doc["id"]),
                task_id=str(doc["task_id"]),
                fire_time=fire_time,
                attempt=int(doc["attempt"]),
                failed_at=failed_at,
                error=doc.get("error"),
                error_type=doc.get("error_type"),
                traceback=doc.get("traceback"),
                task=Task.from_document(task_doc) if isinstance(task_doc, Mapping) else None,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptRecordError(f"stored dead letter is not valid: {exc!r}") from exc


@dataclass(slots=True, frozen=True)
class StateRecord:
    """A small shared JSON document (a circuit breaker's state) and its version for compare-and-set."""

    value: dict[str, JSON]
    version: int


@dataclass(slots=True, frozen=True)
class QuarantinedRecord:
    """A stored record that could not be decoded: kept as it was, excluded from claims."""

    key: str
    raw: str
    error: str


@dataclass(slots=True, frozen=True)
class TaskFilter:
    """Which tasks ``Store.list`` returns; every given field must match."""

    tag: str | None = None
    name: str | None = None
    job: str | None = None
    paused: bool | None = None
    orphaned: bool | None = None

    def matches(self, task: Task) -> bool:
        return (
            (self.tag is None or self.tag in task.tags)
            and (self.name is None or task.name == self.name)
            and (self.job is None or task.job == self.job)
            and (self.paused is None or task.paused == self.paused)
            and (self.orphaned is None or (task.orphaned is not None) == self.orphaned)
        )


def storable(text: str) -> str:
    """``text`` as every store can keep it: a lone surrogate (from a job's exception message),
    which no UTF-8 and so no JSON document can hold, becomes ``?``."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")
    return text


def utcnow() -> datetime:
    """The time now, in UTC: the default clock. A function reading this module's ``datetime``
    at each call, not a ``functools.partial`` of ``datetime.now`` (a frame less per read, about
    2k instructions a run): tools that patch ``datetime`` in modules, as freezegun does, must
    reach it."""
    return datetime.now(UTC)


def lease_end(now: datetime, lease: timedelta) -> datetime:
    return now + lease


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat()


def _parse_iso(value: object) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"expected an ISO datetime string, got {type(value).__name__}")
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
