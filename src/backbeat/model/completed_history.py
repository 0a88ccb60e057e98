"""The history entry of a completed run, as a store writes it in the completion's own call
(``Store.complete(..., history=settings)``): its outcome, its error fields and, for the stores
that keep documents, its row (id, task id, end, outcome and the stored document of
:meth:`.HistoryEntry.to_bytes`), built from the :class:`.RunResult` without an entry object."""

from __future__ import annotations

import logging
from typing import Any

import orjson

from backbeat.model.history import HistoryOutcome, HistorySettings, entry_id, stored_document, to_us
from backbeat.model.records import RunOutcome, RunResult

log = logging.getLogger("backbeat.history")

HistoryRow = tuple[str, str, int, str, str]
"""(entry id, task id, end in epoch microseconds, outcome, stored JSON document)."""

_OUTCOMES = {
    RunOutcome.SUCCESS: HistoryOutcome.SUCCESS,
    RunOutcome.FAILURE: HistoryOutcome.FAILURE,
    RunOutcome.MISSED: HistoryOutcome.MISSED,
    RunOutcome.LOST: HistoryOutcome.LOST,
    RunOutcome.CANCELLED: HistoryOutcome.CANCELLED,
    RunOutcome.ORPHANED: HistoryOutcome.ORPHANED,
}


def outcome_of(result: RunResult) -> HistoryOutcome | None:
    """The recorded outcome of a result; ``None`` for a deferred run (it has not finished)."""
    if result.outcome is RunOutcome.SUCCESS:
        return HistoryOutcome.SUCCESS
    if result.outcome == RunOutcome.FAILURE and result.retry_at is not None:
        return HistoryOutcome.RETRY_SCHEDULED
    if result.outcome == RunOutcome.FAILURE and result.dead_letter:
        return HistoryOutcome.DEAD_LETTERED
    return _OUTCOMES.get(result.outcome)


def error_of(result: RunResult, limit: int) -> tuple[str | None, str | None]:
    """The recorded error type and message (without the type's name in front, truncated to
    ``limit`` characters)."""
    if result.error is None:
        return result.error_type, None
    message = result.error
    if result.error_type is not None:
        # "ValueError: card declined" is stored as type + message
        name = result.error_type.rpartition(".")[2]
        message = message.removeprefix(f"{name}: ")
    if len(message) > limit:
        message = message[: max(limit - 1, 0)] + "…"
    return result.error_type, message


def args_of(result: RunResult) -> dict[str, Any] | None:
    """The task's stored arguments, for ``record_args`` (``None`` without a task snapshot)."""
    task = result.run.task
    return None if task is None else {"args": task.args, "kwargs": task.kwargs, "data": task.data}


def history_row(result: RunResult, owner: str, settings: HistorySettings) -> HistoryRow | None:
    """The stored entry of a completed run; ``None`` for a deferred run, and for an entry whose
    document cannot be built (a message with a lone surrogate: logged, the run completes
    without one)."""
    outcome = outcome_of(result)
    if outcome is None:
        return None
    run = result.run
    ended = to_us(result.finished_at)
    error_type, error = (
        (None, None)
        if result.error is None and result.error_type is None
        else error_of(result, settings.message_limit)
    )
    doc = stored_document(
        task_name=run.task_id if run.task is None else run.task.name,
        task_id=run.task_id,
        run_id=run.id,
        spelled_run_id=run.id,  # the entry id below spells it
        fire_us=to_us(run.fire_time),
        ended_us=ended,
        outcome=outcome,
        attempt=run.attempt,
        started_at=result.started_at,
        error_type=error_type,
        error=error,
        owner=owner,
        args=args_of(result) if settings.record_args else None,
    )
    id_ = entry_id(run.id, run.attempt, outcome, run.fencing_token)
    try:
        text = orjson.dumps(doc).decode()
    except orjson.JSONEncodeError as exc:
        log.warning("history entry %r not recorded (its run completes): %s", id_, exc)
        return None
    return (id_, run.task_id, ended, str(outcome), text)


__all__ = ["HistoryRow", "args_of", "error_of", "history_row", "outcome_of"]
