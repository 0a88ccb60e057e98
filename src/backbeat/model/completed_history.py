"""The history entry of a completed run, as a store writes it in the completion's own call
(``Store.complete(..., history=settings)``): its outcome, its error fields and, for the stores
that keep documents, its row (id, task id, end, outcome and the stored document of
:meth:`.HistoryEntry.to_bytes`), built from the :class:`.RunResult` without an entry object."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import orjson

from backbeat.model.history import EPOCH, HistoryOutcome, HistorySettings, to_us
from backbeat.model.records import RunOutcome, RunResult

log = logging.getLogger("backbeat.history")

HistoryRow = tuple[str, str, int, str, str]
"""(entry id, task id, end in epoch microseconds, outcome, stored JSON document)."""

_SUCCESS = RunOutcome.SUCCESS
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


_NAMES: dict[str, bytes] = {}
_NAMES_KEPT = 4096
_OWNERS: dict[str, bytes] = {}


def _name_json(name: str) -> bytes:
    """``name`` as JSON, remembered for the next run of the task (a few thousand names at most).

    Raises:
        orjson.JSONEncodeError: ``name`` cannot be encoded (a lone surrogate).
    """
    found = _NAMES.get(name)
    if found is None:
        found = orjson.dumps(name)
        if len(_NAMES) >= _NAMES_KEPT:
            _NAMES.clear()
        _NAMES[name] = found
    return found


def owner_member(owner: str) -> bytes:
    """The owner's member of a stored document (``,"owner":"..."``), remembered (an engine
    completes under one owner).

    Raises:
        orjson.JSONEncodeError: ``owner`` cannot be encoded (a lone surrogate).
    """
    found = _OWNERS.get(owner)
    if found is None:
        found = b',"owner":' + orjson.dumps(owner)
        if len(_OWNERS) >= _NAMES_KEPT:
            _OWNERS.clear()
        _OWNERS[owner] = found
    return found


def _error_members(result: RunResult, settings: HistorySettings) -> bytes:
    members: dict[str, Any] = {}
    error_type, error = error_of(result, settings.message_limit)
    if error_type is not None:
        members["error_type"] = error_type
    if error is not None:
        members["error"] = error
    if settings.record_args and (args := args_of(result)) is not None:
        members["args"] = args
    return b"," + orjson.dumps(members)[1:-1] if members else b""


_OUTCOME_VALUES = {outcome: outcome.value for outcome in HistoryOutcome}

US = timedelta(microseconds=1)
"""``(time - EPOCH) // US``: a time in epoch microseconds (:func:`.to_us` without its frame)."""
SUCCESS_DOC = b'{"task_name":%b,"fire_time":%d,"ended_at":%d,"outcome":"success"%b,"started_at":%d}'
"""The document :func:`completed_entry` writes for a *plain success* (most entries): a run that
succeeded at its first attempt, started, under a fencing token, without an error or recorded
arguments, whose run id spells its task id; filled with the name's JSON (from :data:`NAMES`),
the fire time, the end, the :func:`owner_member` and the start (epoch microseconds). The SQL
stores write such an entry with this template inline, the Redis store with its name and start
alone (its indexes, the entry id and the batch keep the rest), both without
:func:`completed_entry`'s call and branches (about 6k of the 22k instructions an entry cost the
client)."""
NAMES = _NAMES
"""Task names already encoded as JSON (a name missing: take :func:`completed_entry`'s way)."""


def plain_success(
    result: RunResult, token: int, settings: HistorySettings, ended: int
) -> tuple[bytes, int] | None:
    """What :data:`SUCCESS_DOC` takes of a *plain success* completed under ``token`` that ended
    at ``ended`` (epoch microseconds), besides the run's fire time: the task name's JSON and the
    start (epoch microseconds; the Redis store keeps no more: the fire time is read from the run
    id); ``None`` for any other run, for one that ended before 1970, or for a name not yet in
    :data:`NAMES` (:func:`completed_entry` then writes the entry, or leaves it out). The stores'
    one test of what a plain success is: they write its entry with the template inline."""
    run, started = result.run, result.started_at
    if (
        ended < 0
        or settings.record_args
        or result.outcome is not _SUCCESS
        or not token
        or started is None
        or run.attempt != 1
        or result.error is not None
        or result.error_type is not None
    ):
        return None
    task_id, task = run.task_id, run.task
    name = NAMES.get(task_id if task is None else task.name)
    if name is None or run.id.rpartition("@")[0] != task_id:
        return None
    return name, (started - EPOCH) // US


def completed_entry(
    result: RunResult, settings: HistorySettings, token: int, owner: bytes, ended: int
) -> tuple[str, str, bytes] | None:
    """(entry id, outcome, stored document) of a completed run that ended at ``ended`` (epoch
    microseconds), the id spelling ``token``, ``owner`` the :func:`owner_member` of its engine;
    ``None`` for a deferred run, and for an entry that ended before 1970 (no store keeps one:
    :func:`.refuse_ends_before_1970`) or whose members cannot be encoded (a lone surrogate):
    both logged, the run completes without an entry. The document is
    :func:`.stored_document`'s, written out rather than built as a dict and encoded: the fixed
    members are digits and known words, only the name, error and arguments need JSON."""
    run = result.run
    if result.outcome is _SUCCESS:
        outcome = "success"
    elif (found := outcome_of(result)) is not None:
        outcome = _OUTCOME_VALUES[found]
    else:
        return None
    run_id, task_id, attempt = run.id, run.task_id, run.attempt
    if ended < 0:
        log.warning(
            "history entry of run %r not recorded (the run completes): it ended at %s, before 1970",
            run_id,
            result.finished_at.isoformat(),
        )
        return None
    try:
        name = _name_json(task_id if run.task is None else run.task.name)
        if result.error is None and result.error_type is None and not settings.record_args:
            rest = owner
        else:
            rest = _error_members(result, settings) + owner
        if run_id.rpartition("@")[0] != task_id:  # the run id does not spell it
            rest += b',"task_id":' + orjson.dumps(task_id)
    except orjson.JSONEncodeError as exc:
        log.warning("history entry of run %r not recorded (the run completes): %s", run_id, exc)
        return None
    if attempt != 1:
        rest += b',"attempt":%d' % attempt
    if result.started_at is not None:
        rest += b',"started_at":%d' % to_us(result.started_at)
    doc = b'{"task_name":%b,"fire_time":%d,"ended_at":%d,"outcome":"%b"%b}' % (
        name,
        to_us(run.fire_time),
        ended,
        outcome.encode(),
        rest,
    )
    id_ = f"{run_id}#{attempt}.{token}#{outcome}" if token else f"{run_id}#{attempt}#{outcome}"
    return id_, outcome, doc


def history_row(
    result: RunResult, owner: str, settings: HistorySettings, ended: int | None = None
) -> HistoryRow | None:
    """The stored entry of a completed run (:func:`completed_entry`; ``ended``: its end in epoch
    microseconds, when the caller has it); ``None`` for a deferred run, and for an entry whose
    document cannot be built or that ended before 1970 (logged, the run completes without one)."""
    if ended is None:
        ended = to_us(result.finished_at)
    found = completed_entry(result, settings, result.run.fencing_token, owner_member(owner), ended)
    if found is None:
        return None
    id_, outcome, doc = found
    return (id_, result.run.task_id, ended, outcome, doc.decode())


__all__ = [
    "NAMES",
    "SUCCESS_DOC",
    "US",
    "HistoryRow",
    "args_of",
    "completed_entry",
    "error_of",
    "history_row",
    "outcome_of",
    "owner_member",
    "plain_success",
]
