"""Dead letters and shared state documents of the Redis store."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Collection
from datetime import datetime
from typing import Any

import orjson

from backbeat.errors import CorruptRecordError, TaskExistsError
from backbeat.model.records import DeadLetter, Run, StateRecord, Task
from backbeat.stores.redis import codec
from backbeat.stores.redis.codec import iso, text
from backbeat.stores.redis.connection import Connection
from backbeat.stores.redis.keys import Keys, to_us

log = logging.getLogger(__name__)


def letter_arg(letter: DeadLetter) -> bytes:
    """A dead letter as ``complete.lua`` stores it: without its task, which the script adds."""
    doc = letter.to_document()
    doc["task"] = None
    return orjson.dumps(doc)


def _decode(letter_id: str, raw: bytes | str, snapshot: bytes | str | None) -> DeadLetter:
    try:
        letter = DeadLetter.from_document(orjson.loads(raw))
        if snapshot is not None:
            packed = snapshot.encode() if isinstance(snapshot, str) else snapshot
            size, _, rest = packed.partition(b":")
            live, doc = rest[: int(size)], rest[int(size) :]
            letter.task = codec.task_from(letter.task_id.encode(), live, doc)
        return letter
    except (orjson.JSONDecodeError, CorruptRecordError, ValueError, AttributeError) as exc:
        raise CorruptRecordError(f"dead letter {letter_id!r} cannot be read: {exc}") from exc


class DeadLetters:
    """The dead-letter and state operations, on the store's connection and keys."""

    def __init__(self, conn: Connection, keys: Keys) -> None:
        self._conn = conn
        self._keys = keys

    async def read(self, ids: list[str] | None = None) -> list[DeadLetter]:
        client = self._conn.client
        async with self._conn.calls():
            if ids is None:
                stored: dict[Any, Any] = await client.hgetall(self._keys.dead)
                ids = [text(i) for i in stored]
                raws = list(stored.values())
            else:
                raws = await client.hmget(self._keys.dead, ids) if ids else []
            snapshots = await client.hmget(self._keys.dead_tasks, ids) if ids else []
        letters = []
        for letter_id, raw, snapshot in zip(ids, raws, snapshots, strict=True):
            if raw is None:
                continue
            try:
                letters.append(_decode(letter_id, raw, snapshot))
            except CorruptRecordError as exc:
                log.error("%s (kept in the store as it is)", exc)
        return sorted(letters, key=lambda letter: (letter.failed_at, letter.id))

    async def remove(self, ids: Collection[str]) -> list[str]:
        client = self._conn.client
        unique = list(dict.fromkeys(ids))
        if not unique:
            return []
        async with self._conn.calls(), client.pipeline(transaction=True) as pipe:
            for letter_id in unique:
                pipe.hdel(self._keys.dead, letter_id)
            pipe.hdel(self._keys.dead_tasks, *unique)
            removed = (await pipe.execute())[:-1]
        return [letter_id for letter_id, n in zip(unique, removed, strict=True) if n]

    async def requeue(self, letter_id: str, now: datetime, add: Any) -> Run | None:
        """Requeue a dead letter; ``add`` is the store's ``add``, to bring back a removed task."""
        found = await self.read([letter_id])
        if not found:
            return None
        letter = found[0]
        fire = iso(letter.fire_time)
        args = (letter.id, letter.task_id, fire, to_us(now))
        status = text(await self._conn.run("requeue", *args))
        if status == "missing" and letter.task is not None:
            task: Task = letter.task.copy(next_run_time=None, running=0)
            with contextlib.suppress(TaskExistsError):  # someone else brought it back meanwhile
                await add([task])
            status = text(await self._conn.run("requeue", *args))
        if status != "ok":
            return None
        return Run(id=letter.id, task_id=letter.task_id, fire_time=letter.fire_time, lease_until=now)

    async def get_state(self, key: str) -> StateRecord | None:
        async with self._conn.calls():
            raw = await self._conn.client.hget(self._keys.state, key)
        if raw is None:
            return None
        version, _, value = (raw.encode() if isinstance(raw, str) else raw).partition(b"|")
        try:
            doc = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            raise CorruptRecordError(f"state document {key!r} is not JSON: {exc}") from exc
        if not isinstance(doc, dict):
            raise CorruptRecordError(f"state document {key!r} is not a JSON object")
        return StateRecord(doc, int(version))

    async def put_state(self, key: str, value: dict[str, Any], version: int, *, wake: bool) -> bool:
        return bool(await self._conn.run("put_state", key, version, orjson.dumps(value), 1 if wake else 0))
