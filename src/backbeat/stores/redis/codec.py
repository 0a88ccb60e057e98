"""Between Python objects and what the Lua scripts take and return.

A task is its JSON document (``Task.to_bytes``, written only by Python, so no Lua JSON
encoder ever rewrites user data) plus a string of live fields that the scripts change
(see ``scripts/_lib.lua``); reading merges the two. Arguments and replies are packed into
few strings: the client's cost is per element, not per byte.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import orjson

from backbeat.errors import CorruptRecordError
from backbeat.model.records import Run, Task
from backbeat.stores.redis.keys import from_us, to_us

Arg = str | bytes | int
"""One argument of a script call."""


def text(value: bytes | str) -> str:
    """A reply element as ``str``."""
    return value.decode() if isinstance(value, bytes) else value


def opt_us(value: datetime | None) -> int | str:
    """Epoch microseconds, or ``''`` for ``None``."""
    return "" if value is None else to_us(value)


def iso(value: datetime) -> str:
    """A fire time as runs store it (and ``run_id_for`` spells it)."""
    return value.astimezone(UTC).isoformat()


def field(value: str | None) -> str:
    """Free text inside a packed argument, where ``|`` separates fields."""
    return "" if value is None else value.replace("|", "/")


def flags(task: Task) -> str:
    """The ``flags`` live field: ``p`` paused, ``o`` orphaned."""
    return ("p" if task.paused else "") + ("o" if task.orphaned is not None else "")


def tags_arg(tags: tuple[str, ...]) -> bytes:
    return orjson.dumps(list(tags)) if tags else b""


def task_arg(task: Task) -> bytes:
    """One task for ``add.lua``: live fields, sizes of id and tags, then id, tags and doc."""
    task_id, tags = task.id.encode(), tags_arg(task.tags)
    head = (
        f"{opt_us(task.next_run_time)}|{task.version}|{task.running}|{task.runs}|{task.failures}|"
        f"{opt_us(task.last_run_at)}|{task.options.max_instances}|{flags(task)}|{field(task.last_outcome)}|"
        f"{len(task_id)}|{len(tags)}|"
    )
    return b"".join((head.encode(), task_id, tags, task.to_bytes()))


def snapshots(sizes: bytes, parts: bytes) -> Iterator[tuple[bytes, bytes, bytes | None]]:
    """The (id, live fields, document or ``None``) of tasks as ``snapshots`` in ``_lib.lua`` packs them."""
    if not sizes:
        return
    lengths = [int(size) for size in sizes.split(b",")]
    at = 0
    for i in range(0, len(lengths), 3):
        id_end = at + lengths[i]
        live_end = id_end + lengths[i + 1]
        doc_size = lengths[i + 2]
        doc_end = live_end + max(doc_size, 0)
        yield parts[at:id_end], parts[id_end:live_end], parts[live_end:doc_end] if doc_size >= 0 else None
        at = doc_end


def task_from(task_id: bytes, live: bytes, doc: bytes | None) -> Task | None:
    """A task from its document and live fields; ``None`` without a document.

    Raises:
        CorruptRecordError: the document or a live field cannot be decoded.
    """
    if doc is None:
        return None
    task = Task.from_bytes(doc)
    try:
        nrt, ver, running, runs, failures, last, _max, _flags, outcome = live.split(b"|", 8)
        task.next_run_time = from_us(nrt) if nrt else None
        task.version = int(ver)
        task.running = int(running)
        task.runs = int(runs)
        task.failures = int(failures)
        task.last_run_at = from_us(last) if last else None
        task.last_outcome = outcome.decode() if outcome else None
    except ValueError as exc:
        raise CorruptRecordError(f"task {task_id.decode()!r} has invalid live fields: {exc!r}") from exc
    return task


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
