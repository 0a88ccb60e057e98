"""Run history of the Redis store: a sorted set of entry ids by end time, one of every entry in
(task, end, id) order (:meth:`.Keys.history_by_task`), and a hash of the entries' JSON documents.

A sorted set orders equal end times by id (bytes), and the per-task members spell the end with a
fixed width, so pages run by (end, id) descending as in the SQL stores, whole or for one task.
Pruning reads the ids to drop by rank, score or lexical range, never every key.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from backbeat.model.completed_history import US, completed_entry, owner_member, plain_success
from backbeat.model.history import EPOCH, HistoryEntry, HistoryQuery, HistorySettings, to_us
from backbeat.model.records import RunResult
from backbeat.stores._history import PRUNE_BATCH, decode, page
from backbeat.stores.redis.codec import Arg, text
from backbeat.stores.redis.connection import Connection
from backbeat.stores.redis.keys import Keys

log = logging.getLogger("backbeat.stores")

READ_BATCH = 200
_END_DIGITS = 18
"""Digits of an end time in a per-task member (epoch microseconds up to the year 9999)."""


def task_member(task_id: str, end_us: int, entry_id: str) -> bytes:
    """An entry's member of the per-task index (as ``history.lua`` writes it)."""
    return f"{task_id}\0{end_us:0{_END_DIGITS}d}\0{entry_id}".encode()


def _ended(task_id: str, end_us: int) -> bytes:
    """Where ``task_id``'s members that ended at ``end_us`` begin."""
    return f"{task_id}\0{end_us:0{_END_DIGITS}d}".encode()


def _task_range(task_id: str) -> tuple[bytes, bytes]:
    """The lexical bounds (inclusive low, exclusive high) of one task's members."""
    return f"[{task_id}\0".encode(), f"({task_id}\1".encode()


def _entry_of(task_id: str, member: bytes) -> tuple[int, str] | None:
    """(end, entry id) of one of ``task_id``'s members; ``None`` for another task's (an id
    that starts with ``task_id`` and a NUL)."""
    rest = member[len(task_id.encode()) + 1 :]
    end, sep = rest[:_END_DIGITS], rest[_END_DIGITS : _END_DIGITS + 1]
    if sep != b"\0" or not end.isdigit():
        return None
    return int(end), rest[_END_DIGITS + 1 :].decode()


_PLAIN_SUCCESS = b'{"task_name":%b,"fire_time":%d%b,"started_at":%d}\0%b\0%018d\0%b#1.%d#success\0'
"""A plain success's entry in one formatting: its document, then its per-task member. The
document is :data:`.SUCCESS_DOC` without the end and the outcome, which the indexes and the id
keep (:meth:`.HistoryEntry.from_bytes` takes the end from them): 48 bytes of about 160 less
to send, to cut out in ``complete.lua`` and to keep."""
_PLAIN_START = b'{"task_name":%b,"started_at":%d\0'
"""The start of a plain success's document, when ``complete.lua`` completes it from the run it
completes (the fire time, as the run id spells it, and the owner's member) and spells its id
and per-task member (run id, token and end). An ISO fire time is a form documents have held
since before layout 6 (:meth:`.HistoryEntry.from_document` reads either), and no conversion of
the fire time by the client; 11 bytes more to keep (18 with microseconds): ``history_docs``
takes 16-32 bytes an entry more by ``MEMORY USAGE``."""


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


def completion_args(
    results: Sequence[RunResult],
    settings: HistorySettings,
    tokens: Sequence[int],
    owner: str,
    ends: Sequence[int],
    *,
    own_tokens: bool = False,
) -> list[Arg]:
    """``complete.lua``'s three history arguments for a batch's results (``ends`` their end
    times in epoch microseconds): what each result's entry is (``''``: every one a ``p``, else
    one letter per result: ``p``, ``1`` or ``0`` for none), the entries in the results' order,
    and the owner's member of a document (:func:`.owner_member`). A ``1`` is its document and
    its per-task member (:func:`task_member`: task id, end and entry id), each followed by a
    NUL (neither holds one: task ids cannot, JSON escapes it); the script finds the id and end
    in the member. A ``p`` is the start of a plain success's document (:data:`_PLAIN_START`) and
    a NUL, which the script completes, spelling the id and member from the run it completes:
    only when the entries' ids spell the tokens the results hold (``own_tokens``), else a plain
    success is a ``1`` too (:data:`_PLAIN_SUCCESS`). A run has no entry when deferred, or when
    its members cannot be encoded (:func:`.completed_entry`)."""
    owner_json = owner_member(owner)
    entries: list[bytes] = []
    kinds: list[str] = []
    for result, token, ended in zip(results, tokens, ends, strict=True):
        run = result.run
        if (plain := plain_success(result, token, settings)) is not None:
            name, start_us = plain
            if own_tokens:
                # 2 values to format instead of 8, and no fire time to convert
                kinds.append("p")
                entries.append(_PLAIN_START % (name, start_us))
                continue
            kinds.append("1")
            entries.append(
                _PLAIN_SUCCESS
                % (
                    name,
                    (run.fire_time - EPOCH) // US,
                    owner_json,
                    start_us,
                    run.task_id.encode(),
                    ended,
                    run.id.encode(),
                    token,
                )
            )
            continue
        found = completed_entry(result, settings, token, owner_json, ended)
        if found is None:
            kinds.append("0")
            continue
        kinds.append("1")
        entries.append(b"%b\0%b\0%018d\0%b\0" % (found[2], run.task_id.encode(), ended, found[0].encode()))
    every_plain = "1" not in kinds and "0" not in kinds
    return ["" if every_plain else "".join(kinds), b"".join(entries), owner_json]


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
        cutoff_us = to_us(before)
        tasks = sorted(set(task_ids))
        client = await self._conn.ready()
        with self._conn.errors():
            async with client.pipeline(transaction=False) as pipe:
                for task_id in tasks:
                    low, high = _task_range(task_id)
                    pipe.zrangebylex(keys.history_by_task, low, b"(" + _ended(task_id, cutoff_us))
                    pipe.zrevrangebylex(keys.history_by_task, high, low, start=keep, num=-1)
                old_and_excess: list[Any] = await pipe.execute()
            members: set[bytes] = set()
            ids: set[bytes] = set()
            for index, task_id in enumerate(tasks):
                for member in (*old_and_excess[2 * index], *old_and_excess[2 * index + 1]):
                    if (found := _entry_of(task_id, member)) is not None:
                        members.add(member)
                        ids.add(found[1].encode())
            old: list[Any] = await client.zrangebyscore(
                keys.history, "-inf", f"({cutoff_us}", start=0, num=PRUNE_BATCH, withscores=True
            )
            if old:
                ends = {text(entry_id): round(score) for entry_id, score in old}
                docs = await client.hmget(keys.history_docs, list(ends))
                stored = [(i, doc) for i, doc in zip(ends, docs, strict=True) if doc is not None]
                members.update(
                    task_member(e.task_id, ends[e.id], e.id) for e in decode(stored, ends) if e.id in ends
                )
                # an entry that cannot be read keeps its per-task member (its task is unknown):
                # a page leaves out an id whose document is gone
                ids.update(entry_id.encode() for entry_id in ends)
            if not ids:
                return 0
            async with client.pipeline(transaction=True) as pipe:
                pipe.hdel(keys.history_docs, *sorted(ids))
                pipe.zrem(keys.history, *sorted(ids))
                if members:
                    pipe.zrem(keys.history_by_task, *sorted(members))
                removed: list[Any] = await pipe.execute()
            return int(removed[0])

    async def query(self, query: HistoryQuery) -> tuple[list[HistoryEntry], str | None]:
        if query.task_id is not None:
            return await self._task_query(query, query.task_id)
        after = query.after()
        high: int | str = "+inf" if after is None else after[0]
        low: int | str = "-inf" if query.since is None else to_us(query.since)
        client = await self._conn.ready()
        found: list[HistoryEntry] = []
        offset = 0
        with self._conn.errors():
            while len(found) <= query.limit:
                batch: list[Any] = await client.zrevrangebyscore(
                    self._keys.history, high, low, start=offset, num=READ_BATCH, withscores=True
                )
                offset += len(batch)
                ends = {
                    text(member): round(score)
                    for member, score in batch
                    if after is None or (round(score), text(member)) < after
                }
                found += await self._read(client, ends, query)
                if len(batch) < READ_BATCH:
                    break
        return page(found, query.limit)

    async def _task_query(self, query: HistoryQuery, task_id: str) -> tuple[list[HistoryEntry], str | None]:
        """One task's page: a lexical range of the per-task index, from the cursor (exclusive)
        down to ``since``."""
        low, high = _task_range(task_id)
        if (after := query.after()) is not None:
            high = b"(" + task_member(task_id, *after)
        if query.since is not None:
            low = b"[" + _ended(task_id, to_us(query.since))
        client = await self._conn.ready()
        found: list[HistoryEntry] = []
        offset = 0
        with self._conn.errors():
            while len(found) <= query.limit:
                batch: list[Any] = await client.zrevrangebylex(
                    self._keys.history_by_task, high, low, start=offset, num=READ_BATCH
                )
                offset += len(batch)
                ends = {
                    entry[1]: entry[0]
                    for member in batch
                    if (entry := _entry_of(task_id, member)) is not None
                }
                found += await self._read(client, ends, query)
                if len(batch) < READ_BATCH:
                    break
        return page(found, query.limit)

    async def _read(self, client: Any, ends: dict[str, int], query: HistoryQuery) -> list[HistoryEntry]:
        """The entries of ``ends`` (id -> end, as the index keeps it) that match ``query``, in
        that order (gone or unreadable ones left out)."""
        if not ends:
            return []
        ids = list(ends)
        docs = await client.hmget(self._keys.history_docs, ids)
        stored = [(i, doc) for i, doc in zip(ids, docs, strict=True) if doc is not None]
        return [entry for entry in decode(stored, ends) if query.matches(entry)]

    async def clear(self) -> None:
        keys = self._keys
        client = await self._conn.ready()
        with self._conn.errors():
            await client.delete(keys.history, keys.history_docs, keys.history_by_task)
