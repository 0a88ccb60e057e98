"""The REST API's response bodies (pydantic models, so the OpenAPI schema describes them)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi.encoders import jsonable_encoder
from pydantic import BaseModel

from backbeat.api.admin import RunView, Stats, state_of
from backbeat.api.tasklist import TaskInfo
from backbeat.model.history import HistoryEntry, HistoryOutcome
from backbeat.model.records import DeadLetter
from backbeat.web.history import TaskSummary


class TaskOut(BaseModel):
    """A stored task."""

    id: str
    name: str
    job: str
    trigger: str
    trigger_spec: dict[str, Any]
    next_run_time: datetime | None
    tags: list[str]
    state: Literal["active", "paused", "orphaned"]
    paused: bool
    orphaned: str | None
    local: bool
    running: int
    runs: int
    failures: int
    last_outcome: str | None
    last_run_at: datetime | None
    args: Any
    kwargs: Any
    data: Any
    misfire_grace_time: float | None
    coalesce: bool
    max_instances: int
    overlap: str

    @classmethod
    def of(cls, info: TaskInfo) -> TaskOut:
        doc = info.to_dict()
        for name in ("args", "kwargs", "data", "trigger_spec"):
            doc[name] = _jsonable(doc[name])
        return cls(**{**doc, "tags": list(info.tags), "state": state_of(info).value})


class RunOut(BaseModel):
    """A run now in the store: ``running`` (leased to ``owner``, ``host:pid:suffix``), ``waiting``
    (a retry, trigger-now or released run), ``buffered`` (waiting for a running run of its task:
    its overlap policy) or ``expired`` (its owner stopped renewing it)."""

    id: str
    task_id: str
    task_name: str | None
    fire_time: datetime
    attempt: int
    owner: str | None
    lease_until: datetime
    state: Literal["running", "waiting", "buffered", "expired"]
    fencing_token: int

    @classmethod
    def of(cls, run: RunView) -> RunOut:
        return cls(
            id=run.id,
            task_id=run.task_id,
            task_name=run.task_name,
            fire_time=run.fire_time,
            attempt=run.attempt,
            owner=run.owner,
            lease_until=run.lease_until,
            state=run.state,
            fencing_token=run.fencing_token,
        )


class HistoryEntryOut(BaseModel):
    """One finished run (or missed fire time), as the store recorded it."""

    id: str
    task_id: str
    task_name: str
    run_id: str
    fire_time: datetime
    started_at: datetime | None
    ended_at: datetime
    duration: float | None
    outcome: HistoryOutcome
    attempt: int
    error_type: str | None
    error: str | None
    owner: str | None
    host: str | None
    pid: int | None
    args: Any = None

    @classmethod
    def of(cls, entry: HistoryEntry) -> HistoryEntryOut:
        return cls.model_validate(entry.to_document())


class HistoryPageOut(BaseModel):
    """One page of run history, newest first; ``next_cursor`` asks for the next (``None``: last)."""

    runs: list[HistoryEntryOut]
    next_cursor: str | None


class TaskSummaryOut(BaseModel):
    """How one task's recent runs went: success rate, last failure, duration percentiles (s)."""

    task_id: str
    task_name: str
    runs: int
    successes: int
    failures: int
    success_rate: float | None
    last_ended_at: datetime
    last_failure_at: datetime | None
    last_failure: str | None
    duration_p50: float | None
    duration_p95: float | None
    duration_max: float | None

    @classmethod
    def of(cls, summary: TaskSummary) -> TaskSummaryOut:
        return cls(**{name: getattr(summary, name) for name in TaskSummary.__dataclass_fields__})


class HistoryOut(BaseModel):
    """The dashboard's history: the newest ``window`` runs of every process, from the store, and
    a summary per task over them."""

    source: Literal["store"]
    window: int
    note: str
    runs: list[HistoryEntryOut]
    tasks: list[TaskSummaryOut]


class DeadLetterOut(BaseModel):
    """A run that failed its last attempt."""

    id: str
    task_id: str
    task_name: str | None
    fire_time: datetime
    attempt: int
    failed_at: datetime
    error: str | None
    error_type: str | None
    traceback: str | None

    @classmethod
    def of(cls, letter: DeadLetter) -> DeadLetterOut:
        return cls(
            id=letter.id,
            task_id=letter.task_id,
            task_name=letter.task.name if letter.task is not None else None,
            fire_time=letter.fire_time,
            attempt=letter.attempt,
            failed_at=letter.failed_at,
            error=letter.error,
            error_type=letter.error_type,
            traceback=letter.traceback,
        )


class StatsOut(BaseModel):
    """Counts over the store."""

    tasks: int
    paused: int
    orphaned: int
    quarantined: int
    running: int
    waiting: int
    dead_letters: int
    next_wakeup: datetime | None

    @classmethod
    def of(cls, stats: Stats) -> StatsOut:
        return cls(**stats.to_dict())


class RunStarted(BaseModel):
    """The run a trigger or a retry added."""

    run_id: str
    detail: str


class ErrorOut(BaseModel):
    """An error: what went wrong, in one line."""

    detail: str


def _jsonable(value: Any) -> Any:
    try:
        return jsonable_encoder(value)
    except (TypeError, ValueError):
        return repr(value)
