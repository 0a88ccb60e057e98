"""The MongoDB store's waiting runs, dead letters, shared state and quarantine listing."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any
from uuid import uuid4

import orjson
from pymongo.errors import DuplicateKeyError

from backbeat.errors import CorruptRecordError
from backbeat.model.records import DeadLetter, QuarantinedRecord, Run, StateRecord, Task
from backbeat.stores.mongodb import documents as d
from backbeat.stores.mongodb.connection import Connection
from backbeat.stores.mongodb.indexes import Collections

HOLD = timedelta(seconds=30)
"""How long a waiting run being added stays unclaimable until it is counted on its task.
A process dying in between leaves it claimable after this (its count is then missing,
which errs towards running it)."""

Decode = Callable[[Sequence[Mapping[str, Any]]], Awaitable[list[tuple[str, Task | None]]]]


async def adopt(c: Collections, run_id: str, task_id: str) -> None:
    """A run a removed task left under an id a task of its id fires again runs that fire time,
    now as that task's: its mark goes and the task counts it (two steps, as MongoDB's other
    counts are; ``MongoStore._recount`` lowers a count a crash left too high)."""
    attached = await c.runs.update_one({"_id": run_id, "detached": True}, {"$unset": {"detached": ""}})
    if attached.modified_count:
        await c.tasks.update_one({"_id": task_id}, {"$inc": {"running": 1}})


class Extras:
    """What ``MongoStore`` delegates: operations beyond claims and fires."""

    def __init__(self, conn: Connection, decode: Decode) -> None:
        self._conn = conn
        self._decode = decode

    async def add_waiting(
        self, run: Run, *, counted: Callable[[], Awaitable[object]] | None = None
    ) -> Run | None:
        """Add ``run`` as a waiting run if it does not exist and its task has room for it.

        The run is inserted first (held unclaimable), then counted with a conditional
        ``$inc`` on its task, then (after ``counted()``) made claimable at
        ``run.lease_until``; refused, it is deleted again.
        """
        c = await self._conn.collections()
        token = uuid4().hex
        held = replace(run, owner=None, lease_until=run.lease_until + HOLD)
        with self._conn.errors():
            try:
                await c.runs.insert_one(d.run_document(held, token))
            except DuplicateKeyError:
                await adopt(c, run.id, run.task_id)
                return None
            reserved = await c.tasks.update_one(d.reserve_filter(run.task_id), d.RESERVE)
            if not reserved.matched_count:
                await c.runs.delete_one({"_id": run.id, "token": token})
                return None
            if counted is not None:
                await counted()
            ready = {"$set": {"lease_until": d.to_us(run.lease_until), "token": None}}
            await c.runs.update_one({"_id": run.id, "token": token}, ready)
        self._conn.notify()
        return replace(run, owner=None)

    # -- dead letters ----------------------------------------------------------------------

    async def dead_letters(self, task_id: str | None) -> list[DeadLetter]:
        c = await self._conn.collections()
        query: d.Doc = {} if task_id is None else {"task_id": task_id}
        with self._conn.errors():
            docs = await c.dead_letters.find(query).sort([("failed_at", 1), ("_id", 1)]).to_list()
        return [d.dead_letter_from_document(doc) for doc in docs]

    async def remove_dead_letters(self, ids: Collection[str]) -> list[str]:
        wanted = list(dict.fromkeys(ids))
        if not wanted:
            return []
        c = await self._conn.collections()
        with self._conn.errors():
            found = {
                doc["_id"]
                for doc in await c.dead_letters.find({"_id": {"$in": wanted}}, {"_id": 1}).to_list()
            }
            if found:
                await c.dead_letters.delete_many({"_id": {"$in": list(found)}})
        return [i for i in wanted if i in found]

    async def requeue_dead_letter(self, dead_letter_id: str, now: datetime) -> Run | None:
        c = await self._conn.collections()
        with self._conn.errors():
            doc = await c.dead_letters.find_one({"_id": dead_letter_id})
            if doc is None or await c.runs.find_one({"_id": dead_letter_id}, {"_id": 1}) is not None:
                return None
            letter = d.dead_letter_from_document(doc)
            if await c.tasks.find_one({"_id": letter.task_id}, {"_id": 1}) is None:
                if letter.task is None:
                    return None
                task = replace(letter.task, next_run_time=None, running=0)
                with contextlib.suppress(DuplicateKeyError):  # re-added by a concurrent requeue
                    await c.tasks.insert_one(d.task_document(task))
        run = Run(id=letter.id, task_id=letter.task_id, fire_time=letter.fire_time, lease_until=now)
        # dropped before the run is claimable, so a new dead letter of a failed re-run stays
        return await self.add_waiting(run, counted=lambda: c.dead_letters.delete_one({"_id": dead_letter_id}))

    # -- shared state ----------------------------------------------------------------------

    async def get_state(self, key: str) -> StateRecord | None:
        c = await self._conn.collections()
        with self._conn.errors():
            doc = await c.state.find_one({"_id": key})
        if doc is None:
            return None
        try:
            value = orjson.loads(doc["value"])
            if not isinstance(value, dict):
                raise TypeError("the value is not a JSON object")
            return StateRecord(value, int(doc["version"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptRecordError(f"state document {key!r} cannot be read: {exc!r}") from exc

    async def put_state(self, key: str, value: dict[str, Any], version: int) -> bool:
        c = await self._conn.collections()
        with self._conn.errors():
            if version == 0:
                try:
                    await c.state.insert_one(d.state_document(key, value, 1))
                except DuplicateKeyError:
                    return False
                return True
            change = {"$set": {"value": orjson.dumps(value).decode(), "version": version + 1}}
            written = await c.state.update_one({"_id": key, "version": version}, change)
        return written.matched_count == 1

    # -- quarantine ------------------------------------------------------------------------

    async def quarantined(self) -> list[QuarantinedRecord]:
        """Quarantined tasks (keyed by id) and runs (keyed ``run:<id>``), by key."""
        c = await self._conn.collections()
        bad = {"quarantine": {"$ne": None}}
        with self._conn.errors():
            tasks = await c.tasks.find(bad).to_list()
            runs = await c.runs.find(bad).to_list()
        records = [QuarantinedRecord(key=doc["_id"], raw=d.raw_of(doc), error=_error(doc)) for doc in tasks]
        for doc in runs:
            raw = orjson.dumps({k: v for k, v in doc.items() if k != "quarantine"}, default=str).decode()
            records.append(QuarantinedRecord(key=f"run:{doc['_id']}", raw=raw, error=_error(doc)))
        return sorted(records, key=lambda record: record.key)


def _error(doc: Mapping[str, Any]) -> str:
    mark = doc.get("quarantine")
    return str(mark.get("error", "")) if isinstance(mark, Mapping) else str(mark)


__all__ = ["HOLD", "Extras"]
