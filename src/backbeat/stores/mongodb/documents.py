"""The MongoDB store's documents, filters, updates and pipelines, as pure functions.

Nothing here talks to a server, so every query the store sends can be unit-tested.

A task document keeps the task's JSON (``Task.to_bytes``) as one *string* field ``doc``,
written only by Python, so user data never has to be valid BSON (keys with ``$`` or ``.``,
integers beyond a signed 64-bit one) and a corrupt record can be kept byte for byte. Beside it are the
fields queries filter on and the *live* fields single-document updates change, which win
over the copy inside ``doc`` when a task is read::

    _id            task id
    doc            JSON string of Task.to_document()
    next           next run time, epoch microseconds (null: none)
    version running max_instances runs failures last_outcome last_run_at   (live fields)
    paused orphaned tags name job                                             (for filters)
    claimed_by claim_until token                                              (a task claim)
    quarantine     null, or {"error": ...}: kept as it was, left out of everything but
                   ``quarantined()``, ``remove`` and ``clear``

A run document is ``{_id: run id, task_id, fire_time (ISO string), attempt, owner,
lease_until (epoch microseconds), token, fencing}``. Times are integer microseconds rather than
BSON dates, whose millisecond precision would change stored fire times. ``token`` names the
claim call that won the run; ``fencing`` is its fencing token, from the counter document
:data:`FENCING_COUNTER` of the state collection (absent in runs stored before fencing tokens:
read as 0).

Values spliced into an aggregation pipeline are wrapped in ``$literal``, so a task name or
an owner id starting with ``$`` is never read as a field path.

Leases are judged by the server's clock, :data:`SERVER_NOW` (``$$NOW``, in ``$expr`` filters
and update pipelines): a claim's ``claim_until`` and the ``lease_until`` of a run with an
owner are server times. Next run times and a waiting run's ``lease_until`` are the callers'.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from backbeat.errors import CorruptRecordError
from backbeat.model.overlap import BUFFERED_UNTIL, Overlap, buffers
from backbeat.model.records import DeadLetter, Run, RunOutcome, RunResult, Task, TaskFilter

Doc = dict[str, Any]
"""A MongoDB document, filter or update."""
Pipeline = list[Doc]
"""An update given as an aggregation pipeline."""

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)

NOT_QUARANTINED: Doc = {"quarantine": None}
"""Matches documents that are not quarantined (``null`` or missing)."""

SERVER_NOW: Doc = {"$multiply": [{"$toLong": "$$NOW"}, 1000]}
"""The server's clock in epoch microseconds (``$$NOW`` has milliseconds), which leases are judged by."""


def server_until(lease_us: int) -> Doc:
    """The server's now + ``lease_us``: when a lease taken now ends."""
    return {"$add": [SERVER_NOW, lit(lease_us)]}


def ended(field: str) -> Doc:
    """A filter: the server time in ``field`` is at or before the server's now."""
    return {"$expr": {"$lte": [f"${field}", SERVER_NOW]}}


def to_us(value: datetime) -> int:
    """Epoch microseconds of an aware datetime (a naive one is taken as UTC)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return (value - EPOCH) // _MICROSECOND


def opt_us(value: datetime | None) -> int | None:
    """Epoch microseconds, or ``None``."""
    return None if value is None else to_us(value)


def from_us(value: int) -> datetime:
    """The UTC datetime of epoch microseconds."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected epoch microseconds, got {type(value).__name__}")
    return EPOCH + timedelta(microseconds=value)


def lit(value: Any) -> Doc:
    """``value`` as a constant inside a pipeline expression."""
    return {"$literal": value}


# -- tasks ---------------------------------------------------------------------------------


def definition_fields(task: Task) -> Doc:
    """The fields of a task a user sets (``add``, ``update``), without the live counters."""
    return {
        "doc": task.to_bytes().decode(),
        "max_instances": task.options.max_instances,
        "paused": task.paused,
        "orphaned": task.orphaned is not None,
        "tags": list(task.tags),
        "name": task.name,
        "job": task.job,
    }


def task_document(task: Task) -> Doc:
    """A new task's whole document."""
    return {
        "_id": task.id,
        **definition_fields(task),
        "next": opt_us(task.next_run_time),
        "version": task.version,
        "running": task.running,
        "runs": task.runs,
        "failures": task.failures,
        "last_outcome": task.last_outcome,
        "last_run_at": opt_us(task.last_run_at),
        "claimed_by": None,
        "claim_until": None,
        "token": None,
        "quarantine": None,
    }


def replace_pipeline(task: Task) -> Pipeline:
    """Upsert ``task``: a stored one keeps its live counters and claim, bumps its version and
    leaves quarantine (its document is new and valid); a new one is written whole."""

    def kept(name: str, value: Any) -> Doc:
        return {"$ifNull": [f"${name}", lit(value)]}

    fields = {name: lit(value) for name, value in definition_fields(task).items()}
    return [
        {
            "$set": {
                **fields,
                "next": lit(opt_us(task.next_run_time)),
                "version": {"$max": [{"$add": [{"$ifNull": ["$version", -1]}, 1]}, lit(task.version)]},
                "running": kept("running", task.running),
                "runs": kept("runs", task.runs),
                "failures": kept("failures", task.failures),
                "last_outcome": kept("last_outcome", task.last_outcome),
                "last_run_at": kept("last_run_at", opt_us(task.last_run_at)),
                "claimed_by": kept("claimed_by", None),
                "claim_until": kept("claim_until", None),
                "token": kept("token", None),
                "quarantine": lit(None),
            }
        }
    ]


def raw_of(doc: Mapping[str, Any]) -> str:
    """A task document's ``doc`` field as stored (JSON of it when it is not a string)."""
    raw = doc.get("doc")
    if isinstance(raw, str):
        return raw
    return orjson.dumps(raw, default=str).decode() if raw is not None else ""


def task_from_document(doc: Mapping[str, Any]) -> Task:
    """A task from its stored document (live fields win over the copy in ``doc``).

    Raises:
        CorruptRecordError: ``doc`` is not a task's JSON or a live field has the wrong type.
    """
    raw = doc.get("doc")
    if not isinstance(raw, str):
        raise CorruptRecordError(
            f"task {doc.get('_id')!r} has no JSON document (doc is {type(raw).__name__})"
        )
    task = Task.from_bytes(raw)
    try:
        if task.id != doc["_id"]:
            raise ValueError(f"document of task {task.id!r} stored under id {doc['_id']!r}")
        nrt, last = doc.get("next"), doc.get("last_run_at")
        task.next_run_time = None if nrt is None else from_us(nrt)
        task.last_run_at = None if last is None else from_us(last)
        task.version = _int(doc, "version")
        task.running = _int(doc, "running")
        task.runs = _int(doc, "runs")
        task.failures = _int(doc, "failures")
        outcome = doc.get("last_outcome")
        if outcome is not None and not isinstance(outcome, str):
            raise TypeError(f"last_outcome is a {type(outcome).__name__}")
        task.last_outcome = outcome
    except (KeyError, TypeError, ValueError) as exc:
        raise CorruptRecordError(f"task {doc.get('_id')!r} has invalid live fields: {exc!r}") from exc
    return task


def _int(doc: Mapping[str, Any], name: str) -> int:
    value = doc[name]
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} is a {type(value).__name__}, not an integer")
    return value


def update_set(task: Task, *, next_changed: bool) -> Doc:
    """The ``$set`` of ``Store.update``: the changed task's definition, its next run time only
    when the user changed it (a concurrent ``fire`` may be moving it), and its version."""
    changes = {**definition_fields(task), "version": task.version}
    if next_changed:
        changes["next"] = opt_us(task.next_run_time)
    return changes


def list_filter(filter: TaskFilter | None, after: str | None) -> Doc:
    """Tasks a listing reads (``filter.matches`` is still applied to the decoded tasks)."""
    query: Doc = dict(NOT_QUARANTINED)
    if after is not None:
        query["_id"] = {"$gt": after}
    if filter is not None:
        if filter.tag is not None:
            query["tags"] = filter.tag
        if filter.name is not None:
            query["name"] = filter.name
        if filter.job is not None:
            query["job"] = filter.job
        if filter.paused is not None:
            query["paused"] = filter.paused
        if filter.orphaned is not None:
            query["orphaned"] = filter.orphaned
    return query


def due_filter(horizon_us: int) -> Doc:
    """Tasks ``claim_due`` may lease: due by ``horizon_us`` (the caller's clock), schedulable,
    and not held by a claim that is live by the server's clock."""
    return {
        "next": {"$lte": horizon_us},
        "paused": False,
        "orphaned": False,
        **NOT_QUARANTINED,
        "$or": [{"claimed_by": None}, ended("claim_until")],
    }


def claim_task_filter(task_id: str, seen_token: str | None, horizon_us: int) -> Doc:
    """Compare-and-set of one candidate: still due, and nobody claimed it since it was read."""
    return {"_id": task_id, "token": seen_token, **due_filter(horizon_us)}


def claim_task_update(owner: str, lease_us: int, token: str) -> Pipeline:
    """Lease a task to ``owner`` until the server's now + ``lease_us``; ``token`` names this
    claim call's batch."""
    return [{"$set": {"claimed_by": lit(owner), "claim_until": server_until(lease_us), "token": lit(token)}}]


DROP_CLAIM: Doc = {"$set": {"claimed_by": None, "claim_until": None, "token": None}}


def held_filter(task_ids: list[str], owner: str) -> Doc:
    """Tasks of ``task_ids`` claimed by ``owner``."""
    return {"_id": {"$in": task_ids}, "claimed_by": owner}


def run_cap(overlap: str) -> int | None:
    """How many runs (leased and buffered) a task may have under ``overlap``; ``None``: its
    ``max_instances`` (``allow_all``)."""
    return None if overlap == Overlap.ALLOW_ALL else 1 + buffers(overlap)


def granted(before: Mapping[str, Any], created: int, cap: int | None) -> int:
    """How many new runs :func:`fire_pipeline` admitted, from the task as it was before."""
    limit = int(before["max_instances"]) if cap is None else cap
    return max(0, min(created, limit - int(before["running"])))


def fire_pipeline(
    owner: str, created: int, claimed_version: int, next_us: int | None, cap: int | None
) -> Pipeline:
    """Admit up to ``created`` new runs while ``running`` stays within ``cap`` (``None``:
    ``max_instances``); when ``owner`` still holds the claim, also store the next fire time
    (unless a user changed the task since the claim) and drop the claim. One atomic
    single-document update."""
    mine = {"$eq": ["$claimed_by", lit(owner)]}
    limit = "$max_instances" if cap is None else lit(cap)
    room = {"$max": [0, {"$min": [lit(created), {"$subtract": [limit, "$running"]}]}]}
    unchanged = {"$and": [mine, {"$eq": ["$version", lit(claimed_version)]}]}
    return [
        {
            "$set": {
                "running": {"$add": ["$running", room]},
                "next": {"$cond": [unchanged, lit(next_us), "$next"]},
                "claimed_by": {"$cond": [mine, None, "$claimed_by"]},
                "claim_until": {"$cond": [mine, None, "$claim_until"]},
                "token": {"$cond": [mine, None, "$token"]},
            }
        }
    ]


def finished_filter(task_id: str) -> Doc:
    """A task with nothing left to run: no runs, no next fire time, no claim (and readable)."""
    return {"_id": task_id, "running": {"$lte": 0}, "next": None, "claimed_by": None, **NOT_QUARANTINED}


def is_finished(doc: Mapping[str, Any]) -> bool:
    """Whether a task document read back matches :func:`finished_filter`."""
    return (
        doc.get("running", 0) <= 0
        and doc.get("next") is None
        and doc.get("claimed_by") is None
        and doc.get("quarantine") is None
    )


def reserve_filter(task_id: str) -> Doc:
    """A task with room for one more run (``running < max_instances``)."""
    return {"_id": task_id, **NOT_QUARANTINED, "$expr": {"$lt": ["$running", "$max_instances"]}}


RESERVE: Doc = {"$inc": {"running": 1}}


def complete_pipeline(result: RunResult) -> Pipeline:
    """Count a finished run on its task: ``running - 1`` (never below 0) unless the run was
    re-queued, ``runs + 1``, ``failures + 1`` for a failure, its outcome and time."""
    failed = 1 if result.outcome == RunOutcome.FAILURE else 0
    running: Any = (
        "$running" if result.retry_at is not None else {"$max": [0, {"$subtract": ["$running", 1]}]}
    )
    return [
        {
            "$set": {
                "running": running,
                "runs": {"$add": ["$runs", 1]},
                "failures": {"$add": ["$failures", failed]},
                "last_outcome": lit(result.outcome.value),
                "last_run_at": lit(to_us(result.finished_at)),
            }
        }
    ]


def quarantine_filter(doc: Mapping[str, Any]) -> Doc:
    """The record exactly as it was read (a rewrite since then is not quarantined)."""
    if "doc" in doc:
        return {"_id": doc["_id"], "doc": doc["doc"]}
    return {"_id": doc["_id"], "doc": {"$exists": False}}


def quarantine_update(error: str) -> Doc:
    """Mark a record quarantined and drop any claim on it; nothing else changes."""
    return {"$set": {"quarantine": {"error": error}, "claimed_by": None, "claim_until": None, "token": None}}


def next_task_filter(*, claimed: bool) -> Doc:
    """Schedulable tasks, unclaimed (sorted by ``next``) or claimed (sorted by ``claim_until``)."""
    query: Doc = {"next": {"$ne": None}, "paused": False, "orphaned": False, **NOT_QUARANTINED}
    query["claimed_by"] = {"$ne": None} if claimed else None
    return query


# -- runs ----------------------------------------------------------------------------------


def run_document(run: Run, token: str | None) -> Doc:
    """A new run's document."""
    return {
        "_id": run.id,
        "task_id": run.task_id,
        "fire_time": run.fire_time.astimezone(UTC).isoformat(),
        "attempt": run.attempt,
        "owner": run.owner,
        "lease_until": to_us(run.lease_until),
        "token": token,
        "fencing": run.fencing_token,
    }


def run_from_document(doc: Mapping[str, Any]) -> Run:
    """A run from its stored document.

    Raises:
        CorruptRecordError: a field is missing or has the wrong type.
    """
    try:
        owner = doc.get("owner")
        if owner is not None and not isinstance(owner, str):
            raise TypeError(f"owner is a {type(owner).__name__}")
        fire_time = datetime.fromisoformat(doc["fire_time"])
        return Run(
            id=str(doc["_id"]),
            task_id=str(doc["task_id"]),
            fire_time=fire_time if fire_time.tzinfo else fire_time.replace(tzinfo=UTC),
            attempt=_int(doc, "attempt"),
            owner=owner,
            lease_until=from_us(doc["lease_until"]),
            fencing_token=_int(doc, "fencing") if doc.get("fencing") is not None else 0,
            detached=doc.get("detached") is True,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CorruptRecordError(f"run {doc.get('_id')!r} is not a valid run: {exc!r}") from exc


def claimable_runs_filter(now_us: int) -> Doc:
    """Runs ``claim_due`` may lease: waiting runs claimable at ``now_us`` (the caller's
    clock), leased runs whose lease ended by the server's clock."""
    return {
        "$or": [
            {"owner": None, "lease_until": {"$lte": now_us}},
            {"owner": {"$ne": None}, **ended("lease_until")},
        ],
        **NOT_QUARANTINED,
    }


def claim_run_filter(run_id: str, seen: Mapping[str, Any], now_us: int) -> Doc:
    """Compare-and-set of one candidate run: same owner and token as read, still claimable."""
    owner = seen.get("owner")
    claimable = {"lease_until": {"$lte": now_us}} if owner is None else ended("lease_until")
    return {"_id": run_id, "owner": owner, "token": seen.get("token"), **claimable, **NOT_QUARANTINED}


def claim_run_update(owner: str, lease_us: int, token: str, fencing: int, *, recovered: bool) -> Pipeline:
    """Lease a run to ``owner`` until the server's now + ``lease_us``; taking it over from an
    expired owner is a new attempt. Its fencing token becomes ``fencing`` (reserved from the
    counter before this claim), or one more than its own if that is greater: a claimer that
    reserved early and won late still holds a token greater than the run's last holder's."""
    return [
        {
            "$set": {
                "owner": lit(owner),
                "lease_until": server_until(lease_us),
                "token": lit(token),
                "attempt": {"$add": ["$attempt", 1 if recovered else 0]},
                "fencing": {"$max": [{"$add": [{"$ifNull": ["$fencing", 0]}, 1]}, lit(fencing)]},
            }
        }
    ]


def buffered_update() -> Doc:
    """Turn a run just created leased into one buffered behind its task's running run."""
    return {"$set": {"owner": None, "lease_until": to_us(BUFFERED_UNTIL), "token": None, "fencing": 0}}


def next_buffered_filter(task_id: str) -> Doc:
    """The buffered runs of a task (the earliest is found by sorting on ``fire_time``)."""
    return {"task_id": task_id, "owner": None, "lease_until": to_us(BUFFERED_UNTIL)}


def buffered_filter(task_ids: list[str]) -> Doc:
    """The buffered runs of these tasks."""
    return {"task_id": {"$in": task_ids}, "owner": None, "lease_until": to_us(BUFFERED_UNTIL)}


def detached_runs(task_ids: list[str]) -> tuple[Doc, Doc]:
    """(filter, update) marking the runs removed tasks leave in flight as theirs: they end
    without touching a task added again under the same id (runs without the mark, as every
    run stored before it, belong to the task of their id)."""
    return {"task_id": {"$in": task_ids}}, {"$set": {"detached": True}}


def attached_runs_filter(task_id: str) -> Doc:
    """The runs of a task's current incarnation (not detached from it by a removal)."""
    return {"task_id": task_id, "detached": {"$ne": True}}


def leased_run_upsert(run: Run, token: str, lease_us: int) -> Pipeline:
    """A new run leased until the server's now + ``lease_us`` (an upsert matching
    ``{_id, token}``: a run of that id stored already fails it with a duplicate key)."""
    doc = {k: lit(v) for k, v in run_document(run, token).items() if k not in ("_id", "token")}
    return [{"$set": {**doc, "lease_until": server_until(lease_us)}}]


def extend_update(lease_us: int) -> Pipeline:
    """Push a lease to the server's now + ``lease_us``."""
    return [{"$set": {"lease_until": server_until(lease_us)}}]


def owned_runs_filter(run_ids: list[str], owner: str) -> Doc:
    """Runs of ``run_ids`` leased to ``owner``."""
    return {"_id": {"$in": run_ids}, "owner": owner}


def fencing_match(token: int) -> Doc:
    """A run's fencing token is ``token`` (0 also matches a run stored before fencing tokens)."""
    return {"fencing": {"$in": [0, None]}} if token == 0 else {"fencing": token}


def held_run_filter(run_id: str, owner: str, token: int) -> Doc:
    """The run ``run_id`` if it is leased to ``owner`` under the fencing token ``token``."""
    return {"_id": run_id, "owner": owner, **fencing_match(token)}


def held_runs_filter(leases: Mapping[str, int], owner: str) -> Doc:
    """Runs of ``leases`` (run id -> fencing token) leased to ``owner`` under those tokens."""
    return {"owner": owner, "$or": [{"_id": run_id, **fencing_match(t)} for run_id, t in leases.items()]}


FENCING_COUNTER = "~fencing"
"""The ``_id`` of the state collection's document counting fencing tokens (kept by ``clear``)."""


def reserve_tokens(n: int) -> Doc:
    """The update that takes ``n`` fencing tokens from the counter document (upserted)."""
    return {"$inc": {"value": n}}


def requeue_update(result: RunResult) -> Doc:
    """A finished run kept as a waiting run until ``retry_at`` (same attempt if deferred)."""
    assert result.retry_at is not None
    deferred = result.outcome == RunOutcome.DEFERRED
    return {
        "$set": {"owner": None, "lease_until": to_us(result.retry_at), "token": None},
        "$inc": {"attempt": 0 if deferred else 1},
    }


def release_runs_update(now_us: int) -> Doc:
    """Released runs: waiting, claimable at once, next attempt."""
    return {"$set": {"owner": None, "lease_until": now_us, "token": None}, "$inc": {"attempt": 1}}


# -- dead letters and state ----------------------------------------------------------------


def dead_letter_document(letter: DeadLetter) -> Doc:
    """A dead letter: its JSON (a string, like a task's) and the fields queries use."""
    return {
        "_id": letter.id,
        "task_id": letter.task_id,
        "failed_at": to_us(letter.failed_at),
        "doc": orjson.dumps(letter.to_document()).decode(),
    }


def dead_letter_from_document(doc: Mapping[str, Any]) -> DeadLetter:
    """A dead letter from its stored document.

    Raises:
        CorruptRecordError: the document cannot be read.
    """
    raw = doc.get("doc")
    try:
        parsed = orjson.loads(raw) if isinstance(raw, str) else None
    except orjson.JSONDecodeError as exc:
        raise CorruptRecordError(f"dead letter {doc.get('_id')!r} is not valid JSON: {exc}") from exc
    if not isinstance(parsed, dict):
        raise CorruptRecordError(f"dead letter {doc.get('_id')!r} is not a JSON object")
    return DeadLetter.from_document(parsed)


def state_document(key: str, value: Mapping[str, Any], version: int) -> Doc:
    """A shared state document (its value as a JSON string, like a task's)."""
    return {"_id": key, "value": orjson.dumps(value).decode(), "version": version}


__all__ = [
    "DROP_CLAIM",
    "NOT_QUARANTINED",
    "RESERVE",
    "SERVER_NOW",
    "Doc",
    "Pipeline",
    "claim_run_filter",
    "claim_run_update",
    "claim_task_filter",
    "claim_task_update",
    "claimable_runs_filter",
    "complete_pipeline",
    "dead_letter_document",
    "dead_letter_from_document",
    "definition_fields",
    "due_filter",
    "ended",
    "extend_update",
    "finished_filter",
    "fire_pipeline",
    "from_us",
    "granted",
    "held_filter",
    "is_finished",
    "leased_run_upsert",
    "list_filter",
    "lit",
    "next_task_filter",
    "opt_us",
    "owned_runs_filter",
    "quarantine_filter",
    "quarantine_update",
    "raw_of",
    "release_runs_update",
    "replace_pipeline",
    "requeue_update",
    "reserve_filter",
    "run_document",
    "run_from_document",
    "server_until",
    "state_document",
    "task_document",
    "task_from_document",
    "to_us",
    "update_set",
]
