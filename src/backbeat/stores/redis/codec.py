"""Between Python objects and what the Lua scripts take and return.

A task is its JSON document (:func:`document`, written only by Python, so no Lua JSON
encoder ever rewrites user data) plus a string of live fields that the scripts change
(see ``scripts/_lib.lua``); reading merges the two. Since key layout 2 the document holds
neither the id (its hash field) nor the live fields, nor any field at its default value;
since layout 3 it is a JSON array, ``[job, trigger, created_at, args, {other fields}]``,
with the times of a UTC date trigger and of ``created_at`` as epoch microseconds, and
trailing defaults left out. The objects of layouts 1 and 2 are read the same way.
Arguments and replies are packed into few strings: the client's cost is per element, not
per byte.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from backbeat.errors import CorruptRecordError
from backbeat.model.instants import iso_us as iso_us
from backbeat.model.records import Run, Task, TaskOptions
from backbeat.stores.redis.keys import EPOCH, from_us, to_us

_MICROSECOND = timedelta(microseconds=1)

Arg = str | bytes | int
"""One argument of a script call."""


def text(value: bytes | str) -> str:
    """A reply element as ``str``."""
    return value.decode() if isinstance(value, bytes) else value


def opt_us(value: datetime | None) -> int | str:
    """Epoch microseconds, or ``''`` for ``None``."""
    return "" if value is None else to_us(value)


def iso(value: datetime) -> str:
    """A fire time as runs store it (and ``run_id_for`` spells it): ``value.astimezone(UTC).isoformat()``."""
    if value.tzinfo is None:  # local time, as astimezone takes it
        return value.astimezone(UTC).isoformat()
    return iso_us((value - EPOCH) // _MICROSECOND)


def field(value: str | None) -> str:
    """Free text inside a packed argument, where ``|`` separates fields."""
    return "" if value is None else value.replace("|", "/")


def flags(task: Task) -> str:
    """The ``flags`` live field: ``p`` paused, ``o`` orphaned."""
    return ("p" if task.paused else "") + ("o" if task.orphaned is not None else "")


def tags_arg(tags: tuple[str, ...]) -> bytes:
    return orjson.dumps(list(tags)) if tags else b""


_REQUIRED = frozenset(("name", "job", "trigger", "created_at"))
_DEFAULTS = Task(id="", name="", job="", trigger={}, next_run_time=None).to_document()
_ONE_SHOT_TASK_OPTIONS = TaskOptions(misfire_grace_time=None)
_ONE_SHOT_OPTIONS = _ONE_SHOT_TASK_OPTIONS.to_json()
"""A date trigger's options are left out against these: one-shots run however late by default."""
_TASK_OPTIONS = TaskOptions()
_TASK_OPTIONS_JSON = _TASK_OPTIONS.to_json()


def _options_defaults(trigger: Mapping[str, Any]) -> dict[str, Any]:
    defaults = _ONE_SHOT_OPTIONS if trigger.get("type") == "date" else _DEFAULTS["options"]
    assert isinstance(defaults, dict)
    return defaults


def _compact_trigger(trigger: dict[str, Any]) -> dict[str, Any] | int:
    """A UTC date trigger as its run date's epoch microseconds (when that reads back exactly)."""
    if trigger.keys() == {"type", "run_date", "timezone"} and trigger["type"] == "date":
        run_date, timezone = trigger["run_date"], trigger["timezone"]
        if timezone == "UTC" and isinstance(run_date, str):
            try:
                micros = to_us(datetime.fromisoformat(run_date))
            except ValueError:
                return trigger
            if iso(from_us(micros)) == run_date:
                return micros
    return trigger


def _instant(value: datetime) -> int | str:
    """A UTC time as epoch microseconds; another offset kept as ISO text."""
    return to_us(value) if value.utcoffset() == timedelta(0) else value.isoformat()


def document(task: Task, nrt: int | None = None) -> bytes:
    """The stored document of ``task``: a JSON array, no id, no live field, no default (``nrt``:
    its next run time in epoch µs, when the caller has it).

    Built from the task's fields directly, never through :meth:`Task.to_document`'s full dict of
    ISO times: the part of an add's client CPU this was (``python -m bench.profile_adds``).
    """
    rest: dict[str, Any] = {}
    if task.kwargs:
        rest["kwargs"] = task.kwargs
    if task.data is not None:
        rest["data"] = task.data
    if task.tags:
        rest["tags"] = list(task.tags)
    trigger = task.trigger
    one_shot = trigger.get("type") == "date"
    if task.options != (_ONE_SHOT_TASK_OPTIONS if one_shot else _TASK_OPTIONS):
        defaults = _ONE_SHOT_OPTIONS if one_shot else _DEFAULTS["options"]
        assert isinstance(defaults, dict)
        rest["options"] = {
            key: value for key, value in task.options.to_json().items() if value != defaults[key]
        }
    if task.paused:
        rest["paused"] = True
    if task.orphaned is not None:
        rest["orphaned"] = task.orphaned
    if task.trace_context is not None:
        rest["trace_context"] = task.trace_context
    if task.name != task.job.rpartition(":")[2]:
        rest["name"] = task.name
    compact: list[Any] = [task.job, _stored_trigger(task, nrt), _instant(task.created_at), task.args]
    if rest:
        compact.append(rest)
    elif not task.args:
        compact.pop()
    return orjson.dumps(compact)


def _stored_trigger(task: Task, nrt: int | None = None) -> dict[str, Any] | int:
    """The trigger as :func:`_compact_trigger` stores it, read off the next run time when that is
    the run date (a new one-shot's), instead of parsing the run date's text back (``nrt``: that
    time in epoch µs, when the caller has it)."""
    trigger, first = task.trigger, task.next_run_time
    if (
        first is not None
        and first.tzinfo is UTC
        and len(trigger) == 3
        and trigger.get("timezone") == "UTC"
        and trigger.get("type") == "date"
    ):
        micros = to_us(first) if nrt is None else nrt
        if trigger.get("run_date") == iso_us(micros):  # first.isoformat(), spelled for less
            return micros
    return _compact_trigger(trigger)


def _expanded(compact: list[Any]) -> dict[str, Any]:
    """The fields of a layout-3 document (see :func:`document`).

    Raises:
        CorruptRecordError: it is not one.
    """
    if not 3 <= len(compact) <= 5 or not isinstance(compact[0], str):
        raise CorruptRecordError(f"a task document has {len(compact)} parts, not 3 to 5")
    job, trigger, created = compact[:3]
    rest = compact[4] if len(compact) > 4 else {}
    if not isinstance(rest, dict):
        raise CorruptRecordError(f"a task document's fifth part is a {type(rest).__name__}, not an object")
    if isinstance(trigger, int):
        trigger = {"type": "date", "run_date": iso(from_us(trigger)), "timezone": "UTC"}
    if not isinstance(trigger, dict):
        raise CorruptRecordError(f"a task document's trigger is a {type(trigger).__name__}")
    fields: dict[str, Any] = {
        "name": job.rpartition(":")[2],
        "job": job,
        "trigger": trigger,
        "created_at": iso(from_us(created)) if isinstance(created, int) else created,
        "args": compact[3] if len(compact) > 3 else [],
        **rest,
    }
    fields["options"] = _options_defaults(trigger) | (rest.get("options") or {})
    return fields


def task_arg(task: Task) -> bytes:
    """One task for ``add.lua``: the sizes of its id and tags, then its id, tags and record (its
    live fields as ``join_live`` in ``_lib.lua`` writes them, then its document)."""
    task_id, tags = task.id.encode(), tags_arg(task.tags)
    first = task.next_run_time
    nrt = None if first is None else to_us(first)
    live = (
        f"{'' if nrt is None else nrt}|{task.version or ''}|{task.running or ''}|{task.runs or ''}|"
        f"{task.failures or ''}|{opt_us(task.last_run_at)}|{_max_text(task.options.max_instances)}|"
        f"{flags(task)}|{field(task.last_outcome)}|"
    )
    head = f"{len(task_id)}|{len(tags)}|"
    return b"".join((head.encode(), task_id, tags, live.encode(), document(task, nrt)))


def _max_text(max_instances: int) -> str:
    return "" if max_instances == 1 else str(max_instances)


def snapshots(flat: Sequence[Any]) -> Iterator[tuple[bytes, bytes, bytes | None]]:
    """The (id, live fields, document or ``None``) of tasks as ``snapshots`` in ``_lib.lua`` lists
    them: bytes, bytes, bytes or ``None`` for each."""
    for i in range(0, len(flat), 3):
        yield flat[i], flat[i + 1], flat[i + 2]


def task_from(task_id: bytes, live: bytes, doc: bytes | None) -> Task | None:
    """A task from its document and live fields; ``None`` without a document.

    Raises:
        CorruptRecordError: the document or a live field cannot be decoded.
    """
    if doc is None:
        return None
    try:
        fields = orjson.loads(doc)
    except orjson.JSONDecodeError as exc:
        raise CorruptRecordError(f"task {task_id.decode()!r} is not valid JSON: {exc}") from exc
    if isinstance(fields, list):
        task = _task_of_array(task_id.decode(), fields)
    elif isinstance(fields, dict):
        fields.setdefault("id", task_id.decode())
        task = Task.from_document(fields)
    else:
        raise CorruptRecordError(f"task {task_id.decode()!r} is a {type(fields).__name__}, not a JSON object")
    try:
        # a live field at its default may be empty (key layout 3)
        nrt, ver, running, runs, failures, last, _max, _flags, outcome = live.split(b"|", 8)
        task.next_run_time = from_us(nrt) if nrt else None
        task.version = int(ver or 0)
        task.running = int(running or 0)
        task.runs = int(runs or 0)
        task.failures = int(failures or 0)
        task.last_run_at = from_us(last) if last else None
        task.last_outcome = outcome.decode() if outcome else None
    except ValueError as exc:
        raise CorruptRecordError(f"task {task_id.decode()!r} has invalid live fields: {exc!r}") from exc
    return task


_REST = frozenset(("name", "kwargs", "data", "tags", "options", "paused", "orphaned", "trace_context"))
"""The fields :func:`document` may write in a layout-3 document's last part."""


def _task_of_array(task_id: str, compact: list[Any]) -> Task:
    """The task of a layout-3 document (see :func:`document`), its live fields left at their
    defaults.

    A document of a shape :func:`document` writes is read straight into the task: going
    through :func:`_expanded` and ``Task.from_document`` wrote its times as ISO text only to
    parse them back, which made decoding a task the largest cost of a claimed run (a third of
    its instructions under callgrind). Any other array takes that general path, errors included.

    Raises:
        CorruptRecordError: the document is not a task's.
    """
    if not _as_written(compact):
        try:
            fields = _expanded(compact)
        except CorruptRecordError as exc:
            raise CorruptRecordError(f"task {task_id!r}: {exc}") from exc
        fields.setdefault("id", task_id)
        return Task.from_document(fields)
    job: str = compact[0]
    trigger, created = compact[1], compact[2]
    args: list[Any] = compact[3] if len(compact) > 3 else []
    try:
        one_shot = type(trigger) is int
        if one_shot:
            trigger = {"type": "date", "run_date": iso_us(trigger), "timezone": "UTC"}
        if len(compact) < 5:  # every other field at its default: no look-ups (most one-shots)
            return Task(
                id=task_id,
                name=job.rpartition(":")[2],
                job=job,
                trigger=trigger,
                next_run_time=None,
                args=args,
                options=TaskOptions(misfire_grace_time=None) if one_shot else _options_of(trigger, None),
                # from_us's sum, without its call: its parsing of text is not needed here
                created_at=EPOCH + timedelta(0, 0, created) if type(created) is int else _created_at(created),
            )
        get = compact[4].get
        data = get("data")
        return Task(
            id=task_id,
            name=str(get("name", job.rpartition(":")[2])),
            job=job,
            trigger=trigger,
            next_run_time=None,
            args=args,
            kwargs=dict(get("kwargs") or ()),
            data=None if data is None else dict(data),
            tags=tuple(get("tags") or ()),
            options=_options_of(trigger, get("options")),
            paused=bool(get("paused", False)),
            orphaned=get("orphaned"),
            created_at=from_us(created) if type(created) is int else _created_at(created),
            trace_context=get("trace_context"),
        )
    except (TypeError, ValueError, OverflowError) as exc:  # OverflowError: a time out of range
        raise CorruptRecordError(f"task {task_id!r} is not a valid task document: {exc!r}") from exc


def _as_written(compact: list[Any]) -> bool:
    """Whether a layout-3 document has a shape :func:`document` writes: each part of its type,
    the last holding only fields it may write."""
    size = len(compact)
    return (
        3 <= size <= 5
        and type(compact[0]) is str
        and type(compact[1]) in (int, dict)
        and type(compact[2]) in (int, str)
        and (size < 4 or type(compact[3]) is list)
        and (size < 5 or (type(compact[4]) is dict and compact[4].keys() <= _REST))
    )


def _options_of(trigger: dict[str, Any], stored: Any) -> TaskOptions:
    """A task's options from those its document holds (``None``: every one at its default)."""
    one_shot = trigger.get("type") == "date"
    if not stored:
        return TaskOptions(misfire_grace_time=None) if one_shot else TaskOptions()
    return TaskOptions.from_json((_ONE_SHOT_OPTIONS if one_shot else _TASK_OPTIONS_JSON) | stored)


def _created_at(text: str) -> datetime:
    """A creation time written as ISO text (an offset other than UTC's); naive: UTC."""
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def stored_document(record: bytes | str | None) -> str:
    """The document of a stored record (``''`` for none), without its live fields."""
    if record is None:
        return ""
    parts = text(record).split("|", 9)
    return parts[9] if len(parts) == 10 else text(record)


def claimed_runs(flat: list[Any], owner: str, lease_until: datetime) -> list[Run]:
    """Runs of ``claim.lua``'s reply: run id, fire time, attempt (< 0: recovered from a dead
    owner), fencing token."""
    runs = []
    for i in range(0, len(flat), 4):
        run_id, fire = text(flat[i]), text(flat[i + 1])
        attempt = int(flat[i + 2])
        runs.append(
            Run(
                id=run_id,
                task_id=run_id[: -len(fire) - 1],
                fire_time=datetime.fromisoformat(fire),
                attempt=abs(attempt),
                owner=owner,
                lease_until=lease_until,
                recovered=attempt < 0,
                fencing_token=int(flat[i + 3]),
            )
        )
    return runs


def stored_run(run_id: str, packed: bytes | str, lease_until: datetime) -> Run:
    """A run from its record ``attempt|fire_time|fencing_token|owner`` (or, written before
    fencing tokens, ``attempt|fire_time|owner``) and its lease end."""
    attempt, fire, rest = text(packed).split("|", 2)
    token, bar, owner = rest.partition("|")
    if not (bar and token.isdigit()):
        token, owner = "0", rest
    return Run(
        id=run_id,
        task_id=run_id[: -len(fire) - 1],
        fire_time=datetime.fromisoformat(fire),
        attempt=int(attempt),
        owner=owner or None,
        lease_until=lease_until,
        fencing_token=int(token),
    )


def token_pairs(leases: Mapping[str, int]) -> list[str]:
    """Leases (run id -> fencing token) as the scripts read them: token, run id, token, ..."""
    return [part for run_id, token in leases.items() for part in (str(token), run_id)]
