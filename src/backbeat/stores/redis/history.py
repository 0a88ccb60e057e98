"""Run history of the Redis store: a sorted set of entry ids by end time per task and one of
every task's, and a hash of the entries' JSON documents.

A sorted set orders equal end times by id (bytes), so pages run by (end, id) descending as in
the SQL stores. Pruning reads the ids to drop by rank or score range, never every key.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from backbeat.model.history import HistoryEntry, HistoryQuery, to_us
from backbeat.stores._history import PRUNE_BATCH, decode, page
from backbeat.stores.redis.codec import text
from backbeat.stores.redis.connection import Connection
from backbeat.stores.redis.keys import Keys

READ_BATCH = 200


def pack(entries: Sequence[HistoryEntry]) -> tuple[str, bytes]:
    """``history.lua``'s two arguments: the sizes (id, task id, end, document of each entry)
    and the parts (id, task id and document of each, back to back)."""
    sizes: list[str] = []
    parts: list[bytes] = []
    for entry in entries:
        entry_id, task_id, doc = entry.id.encode(), entry.task_id.encode(), entry.to_bytes()
        sizes.append(f"{len(entry_id)},{len(task_id)},{to_us(entry.ended_at)},{len(doc)}")
        parts += (entry_id, task_id, doc)
    return ",".join(sizes), b"".join(parts)


class History:
    """The history operations, on the store's connection and keys."""

    def __init__(self, conn: Connection, keys: Keys) -> None:
        self._conn = conn
        self._keys = keys

    async def record(self, entries: Sequence[HistoryEntry]) -> None:
        if not entries:
            return
        await self._conn.run("history", *pack(entries))

    async def prune(self, task_ids: Collection[str], *, before: datetime, keep: int) -> int:
        keys = self._keys
        cutoff = f"({to_us(before)}"
        client = await self._conn.ready()
        with self._conn.errors():
            doomed: dict[str, set[bytes]] = {}
            async with client.pipeline(transaction=False) as pipe:
                for task_id in sorted(set(task_ids)):
                    pipe.zrangebyscore(keys.task_history(task_id), "-inf", cutoff)
                    pipe.zrange(keys.task_history(task_id), 0, -(keep + 1))
                old_and_excess = await pipe.execute()
            for index, task_id in enumerate(sorted(set(task_ids))):
                doomed[task_id] = set(old_and_excess[2 * index]) | set(old_and_excess[2 * index + 1])
            old: list[Any] = await client.zrangebyscore(
                keys.history, "-inf", cutoff, start=0, num=PRUNE_BATCH
            )
            if old:
                docs = await client.hmget(keys.history_docs, old)
                stored = [(text(i), doc) for i, doc in zip(old, docs, strict=True) if doc is not None]
                for entry in decode(stored):
                    doomed.setdefault(entry.task_id, set()).add(entry.id.encode())
                # an entry that cannot be read is not taken out of its task's set (its task is
                # unknown): a page leaves out an id whose document is gone
                doomed.setdefault("", set()).update(old)
            ids = sorted({entry_id for found in doomed.values() for entry_id in found})
            if not ids:
                return 0
            async with client.pipeline(transaction=True) as pipe:
                pipe.hdel(keys.history_docs, *ids)
                pipe.zrem(keys.history, *ids)
                for task_id, found in doomed.items():
                    if task_id and found:
                        pipe.zrem(keys.task_history(task_id), *found)
                removed: list[Any] = await pipe.execute()
            return int(removed[0])

    async def query(self, query: HistoryQuery) -> tuple[list[HistoryEntry], str | None]:
        key = self._keys.history if query.task_id is None else self._keys.task_history(query.task_id)
        after = query.after()
        high: int | str = "+inf" if after is None else after[0]
        low: int | str = "-inf" if query.since is None else to_us(query.since)
        client = await self._conn.ready()
        found: list[HistoryEntry] = []
        offset = 0
        with self._conn.errors():
            while len(found) <= query.limit:
                batch: list[Any] = await client.zrevrangebyscore(
                    key, high, low, start=offset, num=READ_BATCH, withscores=True
                )
                offset += len(batch)
                ids = [
                    text(member)
                    for member, score in batch
                    if after is None or (round(score), text(member)) < after
                ]
                if ids:
                    docs = await client.hmget(self._keys.history_docs, ids)
                    stored = [(i, doc) for i, doc in zip(ids, docs, strict=True) if doc is not None]
                    found += [entry for entry in decode(stored) if query.matches(entry)]
                if len(batch) < READ_BATCH:
                    break
        return page(found, query.limit)

    async def clear(self) -> None:
        keys = self._keys
        client = await self._conn.ready()
        with self._conn.errors():
            task_ids = [text(t) for t in await client.smembers(keys.history_tasks)]
            for start in range(0, len(task_ids), READ_BATCH):
                await client.delete(*(keys.task_history(t) for t in task_ids[start : start + READ_BATCH]))
            await client.delete(keys.history, keys.history_docs, keys.history_tasks)
