"""Run history of the MongoDB store: one document per entry in ``<collection>.history``.

Pages and pruning go through the (task, end, id) and (end, id) indexes; a TTL index on the
end time also lets the server expire entries by itself (``MongoStore(history_ttl=...)``).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from pymongo.errors import BulkWriteError

from backbeat.model.completed_history import HistoryRow
from backbeat.model.history import PRUNE_BATCH, HistoryEntry, HistoryQuery, from_us, to_us
from backbeat.stores._history import decode, page
from backbeat.stores.mongodb.connection import Connection

_NEWEST = [("ended_us", -1), ("_id", -1)]
_DUPLICATE_KEY = 11000


async def record(conn: Connection, entries: Sequence[HistoryEntry]) -> None:
    rows = [(e.id, e.task_id, to_us(e.ended_at), str(e.outcome), e.to_bytes().decode()) for e in entries]
    await record_rows(conn, rows)


async def record_rows(conn: Connection, rows: Sequence[HistoryRow]) -> None:
    """Insert entries (id, task id, end, outcome, document); an id stored already stays as it was."""
    if not rows:
        return
    c = await conn.collections()
    docs = [
        {"_id": i, "task_id": task_id, "ended": from_us(end), "ended_us": end, "outcome": outcome, "doc": doc}
        for i, task_id, end, outcome, doc in rows
    ]
    with conn.errors():
        try:
            await c.history.insert_many(docs, ordered=False)
        except BulkWriteError as exc:
            # an entry recorded already stays as it was; any other error is one
            if any(error.get("code") != _DUPLICATE_KEY for error in exc.details.get("writeErrors", [])):
                raise


async def prune(conn: Connection, task_ids: Collection[str], *, before: datetime, keep: int) -> int:
    c = await conn.collections()
    cutoff = to_us(before)
    removed = 0
    with conn.errors():
        for task_id in sorted(set(task_ids)):
            old = await c.history.delete_many({"task_id": task_id, "ended_us": {"$lt": cutoff}})
            removed += old.deleted_count
            excess = await c.history.find({"task_id": task_id}, {"_id": 1}).sort(_NEWEST).skip(keep).to_list()
            if excess:
                gone = await c.history.delete_many({"_id": {"$in": [doc["_id"] for doc in excess]}})
                removed += gone.deleted_count
        aged = (
            await c.history.find({"ended_us": {"$lt": cutoff}}, {"_id": 1})
            .sort([("ended_us", 1), ("_id", 1)])
            .limit(PRUNE_BATCH)
            .to_list()
        )
        if aged:
            gone = await c.history.delete_many({"_id": {"$in": [doc["_id"] for doc in aged]}})
            removed += gone.deleted_count
    return removed


async def query(conn: Connection, q: HistoryQuery) -> tuple[list[HistoryEntry], str | None]:
    c = await conn.collections()
    where: dict[str, Any] = {}
    if q.task_id is not None:
        where["task_id"] = q.task_id
    if q.outcomes is not None:
        where["outcome"] = {"$in": sorted(q.outcomes)}
    if q.since is not None:
        where["ended_us"] = {"$gte": to_us(q.since)}
    if (after := q.after()) is not None:
        where["$or"] = [{"ended_us": {"$lt": after[0]}}, {"ended_us": after[0], "_id": {"$lt": after[1]}}]
    with conn.errors():
        docs = await c.history.find(where, {"doc": 1}).sort(_NEWEST).limit(q.limit + 1).to_list()
    return page(decode((str(doc["_id"]), doc["doc"]) for doc in docs), q.limit)
