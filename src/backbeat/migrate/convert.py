"""One APScheduler 3 job state becomes one backbeat task: same id, callable, arguments and schedule."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from backbeat.errors import BackbeatError
from backbeat.migrate.unpickle import loads
from backbeat.model import codec, triggers
from backbeat.model.records import Task, TaskOptions
from backbeat.model.stored_text import stored_text

_REFS = ("func:", "method:", "job:")


class JobRefusedError(BackbeatError):
    """A job that cannot be migrated; the message says why (the job id is reported beside it)."""


def parse_func_map(pairs: list[str]) -> dict[str, str]:
    """``["old.mod:f=new.mod:f", ...]`` as a dict.

    Raises:
        ValueError: a pair is not ``OLD=NEW`` with both sides non-empty.
    """
    mapping: dict[str, str] = {}
    for pair in pairs:
        old, sep, new = pair.partition("=")
        if not sep or not old.strip() or not new.strip():
            raise ValueError(f"--map-func {pair!r} is not OLD=NEW (e.g. 'app.jobs:send=app.tasks:send')")
        mapping[old.strip()] = new.strip()
    return mapping


def job_ref(func: str, func_map: Mapping[str, str]) -> str:
    """Backbeat's reference for APScheduler's ``module:qualname`` (after ``func_map``).

    A dotted qualname (``Class.method``) becomes a ``method:`` reference, resolved through the
    service provider when it runs; a mapped value already written as a backbeat reference
    (``func:``, ``method:``, ``job:``) is kept as it is. Nothing is imported.

    Raises:
        JobRefusedError: ``func`` is not a ``module:qualname`` reference.
    """
    target = func_map.get(func, func)
    if target.startswith(_REFS):
        return target
    module, _, qualname = target.partition(":")
    if not module or not qualname or "<" in qualname:
        raise JobRefusedError(f"its callable {target!r} is not a 'module:qualname' reference")
    return f"{'method' if '.' in qualname else 'func'}:{module}:{qualname}"


def to_task(job_id: str, data: bytes, *, func_map: Mapping[str, str], now: datetime) -> Task:
    """The backbeat task of a pickled APScheduler 3 job state.

    The trigger keeps its time zone, start and end dates and jitter. The job's stored next run
    time is kept as it is (it may be jittered or overdue: the engine applies misfire grace and
    coalesce to it as APScheduler would). A paused job (no next run time) becomes a paused task
    whose next run time is the trigger's next fire time after ``now``. The executor's name is
    kept: a worker needs an executor of that name (both schedulers call theirs ``"default"``).

    Raises:
        JobRefusedError: the state names a class outside the restricted unpickler's list, an
            argument cannot be stored as JSON, the trigger has no backbeat equivalent, or the id
            or name is text no store keeps (:func:`~backbeat.model.stored_text.stored_text`).
    """
    try:
        state = loads(data)
    except BackbeatError as exc:
        raise JobRefusedError(f"its pickled state was refused: {exc}") from exc
    if not isinstance(state, dict) or not isinstance(state.get("func"), str):
        raise JobRefusedError(f"its state is a {type(state).__name__}, not an APScheduler 3 job state")
    if state.get("id", job_id) != job_id:
        raise JobRefusedError(f"its state holds another id, {state.get('id')!r}")
    if job_id == "":
        raise JobRefusedError("its id is empty (a task's id never is)")
    try:
        stored_text(job_id, "its id")
        name = stored_text(str(state.get("name") or state["func"]), "its name")
        spec = triggers.make_trigger_spec(state.get("trigger"), now=now)
        args = codec.encode(list(state.get("args") or ()), path="args")
        kwargs = codec.encode(dict(state.get("kwargs") or {}), path="kwargs")
        options = _options(state)
    except (BackbeatError, TypeError, ValueError) as exc:
        raise JobRefusedError(str(exc)) from exc
    next_run = state.get("next_run_time")
    paused = next_run is None
    if paused:
        next_run = triggers.next_fire_time(spec, None, now)
        if next_run is None and triggers.is_one_shot(spec):
            next_run = datetime.fromisoformat(spec["run_date"])
    elif not isinstance(next_run, datetime) or next_run.utcoffset() is None:
        raise JobRefusedError(f"its next_run_time {next_run!r} is not a timezone-aware datetime")
    return Task(
        id=job_id,
        name=name,
        job=job_ref(state["func"], func_map),
        trigger=spec,
        next_run_time=next_run.astimezone(UTC) if next_run is not None else None,
        args=args,
        kwargs=kwargs,
        options=options,
        paused=paused,
        created_at=now,
    )


def _options(state: Mapping[str, Any]) -> TaskOptions:
    grace, coalesce, instances = (state.get(k) for k in ("misfire_grace_time", "coalesce", "max_instances"))
    if grace is not None and (isinstance(grace, bool) or not isinstance(grace, int | float) or grace < 0):
        raise ValueError(f"misfire_grace_time {grace!r} is not a number of seconds")
    if isinstance(instances, bool) or not isinstance(instances, int) or instances < 1:
        raise ValueError(f"max_instances {instances!r} is not a positive integer")
    executor = state.get("executor") or "default"
    if not isinstance(executor, str):
        raise ValueError(f"executor {executor!r} is not an executor name")
    return TaskOptions(
        misfire_grace_time=grace, coalesce=bool(coalesce), max_instances=instances, executor=executor
    )
