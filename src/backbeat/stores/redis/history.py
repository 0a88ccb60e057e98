"""Run history of the Redis store (key layout 7), written a batch at a time: the entries one
completion (or one ``record_history`` call) records are one hash (:meth:`.Keys.history_batch`):
their documents as they came (a first line of what they share, then a line per entry) and their
members. Each entry is one member, ``task id \\0 end \\0 entry id \\0 batch.line``, of the per-task
index (:meth:`.Keys.history_by_task`, scores 0, one task's entries a lexical range in (end, id)
order); the end-time index (:meth:`.Keys.history_at`) holds each batch once per window of ends
(:data:`WINDOW`) it spans, scored by its latest end there.

A completion thus inserts one member an entry into a sorted set, where the layout before wrote a
document into a hash under the entry's id, the id into a sorted set by end and the per-task
member: inserts at random places in three big structures, which cost the server more CPU time
than their instructions say. The server's instructions per entry in a worker's fires are about
the same (Lua work on the batch took the place of the structures'), its CPU time per entry about
half, and its memory 480 B instead of 680 (``docs/performance.md``). Entries of that layout
(:meth:`.Keys.history`, :meth:`.Keys.history_docs`, per-task members without a batch) stay where
they are, read and pruned beside the new ones, as are those a process of that layout goes on
writing while others are upgraded.

Pages run by (end, id) descending as in the SQL stores, whole or for one task. A page across
tasks reads the windows of batches downwards from its cursor's, each batch's members of the
window that are still in the per-task index (one pruned by its task's count leaves its batch's
document behind until the rest of the batch goes). Pruning finds what to drop by rank, score or
lexical range, never by reading every key, and a batch goes with the last of its entries or
once all of its windows are past the age (whatever its count says: a process of key layout 6
prunes members of any layout without counting them). A completion whose history part stops at
an entry it cannot read keeps the entries before it, their batch counting them alone.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

import orjson

from backbeat.errors import CorruptRecordError
from backbeat.model.completed_history import completed_entry, owner_member, plain_success
from backbeat.model.history import PRUNE_BATCH, HistoryEntry, HistoryQuery, HistorySettings, to_us
from backbeat.model.records import RunResult
from backbeat.stores._history import decode, page
from backbeat.stores.redis.codec import Arg, text
from backbeat.stores.redis.connection import Connection
from backbeat.stores.redis.keys import Keys

log = logging.getLogger("backbeat.stores")

READ_BATCH = 200
WINDOW = 10_000
"""Microseconds of ends one entry of the end-time index spans at most (``_lib.lua``'s
``HISTORY_WINDOW_DIGITS``: an end without its last 4 digits names its window)."""
WINDOWS_READ = (2, 64)
"""Entries of the end-time index (a batch's window: one entry to a few hundred) read at once:
the first read of a page takes the fewest, each next one twice as many, up to the most (a page
of the newest runs reads a window or two, one far down a sparse history no more calls than
needed)."""
PRUNE_WINDOWS = PRUNE_BATCH
"""Windows of batches past their age one prune reads at a time: it removes whole ones until
:data:`.PRUNE_BATCH` entries are removed (a window holds a batch's entries of 10 ms)."""
PRUNE_WINDOW_READS = 4
"""Reads of :data:`PRUNE_WINDOWS` one prune makes at most while the windows it removes hold too
few entries to reach :data:`.PRUNE_BATCH`: a window whose entries their task's count pruned
already (its batch lives on for others) holds none, and a prune that stopped at a page of them
would say nothing is left."""
_END_DIGITS = 18
"""Digits of an end time in a member (epoch microseconds up to the year 9999)."""

_Key = tuple[int, str, str | None]
"""An entry as an index holds it: (end, entry id, ``batch.line`` or ``None`` for one written
before key layout 7, whose document is in :meth:`.Keys.history_docs`)."""


def task_member(task_id: str, end_us: int, entry_id: str) -> bytes:
    """An entry's member of the per-task index without its batch: the whole member of an entry
    written before key layout 7, the start of a later one's."""
    return f"{task_id}\0{end_us:0{_END_DIGITS}d}\0{entry_id}".encode()


def _ended(task_id: str, end_us: int) -> bytes:
    """Where ``task_id``'s members that ended at ``end_us`` begin."""
    return f"{task_id}\0{end_us:0{_END_DIGITS}d}".encode()


def _task_range(task_id: str) -> tuple[bytes, bytes]:
    """The lexical bounds (inclusive low, exclusive high) of one task's members."""
    return f"[{task_id}\0".encode(), f"({task_id}\1".encode()


def _entry_of(task_id: str, member: bytes) -> _Key | None:
    """(end, entry id, batch reference) of one of ``task_id``'s members; ``None`` for one that
    is not."""
    rest = member[len(task_id.encode()) + 1 :]
    end, sep = rest[:_END_DIGITS], rest[_END_DIGITS : _END_DIGITS + 1]
    if sep != b"\0" or not end.isdigit():
        return None
    entry_id, _, ref = rest[_END_DIGITS + 1 :].partition(b"\0")
    return int(end), entry_id.decode(), ref.decode() or None


def _key_of(member: bytes) -> _Key | None:
    """(end, entry id, batch reference) of a member of the end-time index; ``None`` for one
    that cannot be read."""
    parts = member.split(b"\0")
    if len(parts) != 4 or len(parts[1]) != _END_DIGITS or not parts[1].isdigit():
        return None
    return int(parts[1]), parts[2].decode(), parts[3].decode()


def _once(keys: list[_Key], last: _Key | None) -> list[_Key]:
    """``keys`` (in (end, id) order) without those of the same end and id as the one before
    them (``last`` before the first): an entry a process of key layout 6 recorded again beside
    its batch (it looks for the id among its documents alone) is listed once, as every store
    lists it."""
    once: list[_Key] = []
    for key in keys:
        if last is None or key[:2] != last[:2]:
            once.append(key)
        last = key
    return once


_PLAIN_DOC = b'{"task_name":%b,"started_at":%d}'
"""A plain success's document: its name and start. The end and the outcome are kept by the
indexes and the id, the fire time by the run id the entry id spells (``<task id>@<ISO time>``),
and the owner by its batch's first line (:meth:`.HistoryEntry.from_document` reads each)."""


def _header(owner: str | None) -> bytes:
    """A batch's first line: what its entries share (the owner of a completion's)."""
    return b"{}" if owner is None else b"{" + owner_member(owner)[1:] + b"}"


def pack(entries: Sequence[HistoryEntry]) -> tuple[bytes, bytes]:
    """``history.lua``'s two arguments: the batch's documents (a first line, then each entry's
    document) and each entry's member without its batch (task id, end and id, each followed by
    a NUL), of entries that ended in 1970 or later (:func:`.refuse_ends_before_1970`: a member
    spells its end in 18 digits, and ``history.lua`` refuses one that does not)."""
    lines = [_header(None)]
    members: list[bytes] = []
    for entry in entries:
        ended = to_us(entry.ended_at)
        lines.append(entry.to_bytes())
        members.append(task_member(entry.task_id, ended, entry.id) + b"\0")
    return b"\n".join(lines), b"".join(members)


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
    one letter per result: ``p``, ``1`` or ``0`` for none), the batch's documents (the owner's
    line, then a line per ``p`` or ``1``, in the results' order), and the members of the ``1``
    entries (:func:`task_member`: task id, end and entry id, each part followed by a NUL). A
    ``p`` is a plain success (:data:`_PLAIN_DOC`) whose member the script spells from the run it
    completes (run id, token and end): only when the entries' ids spell the tokens the results
    hold (``own_tokens``), else a plain success is a ``1`` too. A run has no entry when deferred,
    when it ended before 1970, or when its members cannot be encoded (:func:`.completed_entry`)."""
    lines = [_header(owner)]
    ones: list[bytes] = []
    kinds: list[str] = []
    for result, token, ended in zip(results, tokens, ends, strict=True):
        run = result.run
        # an end before 1970 has neither (no member spells it; complete.lua would stop at it,
        # and drop the entries after it too): completed_entry leaves it out
        if (plain := plain_success(result, token, settings, ended)) is not None:
            lines.append(_PLAIN_DOC % plain)
            if own_tokens:
                kinds.append("p")
                continue
            kinds.append("1")
            ones.append(
                b"%b\0%018d\0%b#1.%d#success\0" % (run.task_id.encode(), ended, run.id.encode(), token)
            )
            continue
        # the owner is the batch's, on its first line
        found = completed_entry(result, settings, token, b"", ended)
        if found is None:
            kinds.append("0")
            continue
        kinds.append("1")
        lines.append(found[2])
        ones.append(b"%b\0%018d\0%b\0" % (run.task_id.encode(), ended, found[0].encode()))
    every_plain = "1" not in kinds and "0" not in kinds
    return ["" if every_plain else "".join(kinds), b"\n".join(lines), b"".join(ones)]


class _EndIndex:
    """An end-time index read downwards in batches: every entry it holds at or above
    :attr:`floor` is in :attr:`keys` (ties at a batch's lowest score are read whole, so that
    (end, id) order holds across batches). Layout 7's (:meth:`.Keys.history_at`) scores windows
    of batches by their latest end, each holding entries up to :data:`WINDOW` earlier; the older
    layout's (:meth:`.Keys.history`) scores entry ids by their ends."""

    def __init__(
        self, conn: Connection, keys: Keys, high: int | None, low: int | None, *, legacy: bool
    ) -> None:
        self._conn = conn
        self._key = keys.history if legacy else keys.history_at
        self._legacy = legacy
        if high is not None and not legacy:
            high = (high // WINDOW + 1) * WINDOW - 1  # the cursor's window holds entries past it
        self._high: str = "+inf" if high is None else str(high)
        self._low: str = "-inf" if low is None else str(low)
        self._lowest = "" if low is None else f"{low:0{_END_DIGITS}d}"
        self._windows = WINDOWS_READ[0]
        self.keys: list[_Key] = []
        self.floor: int | None = None
        """The lowest score read (``None``: everything is read)."""
        self.done = False

    async def _parse(self, items: list[Any]) -> list[_Key]:
        if self._legacy:
            return [(round(score), text(member), None) for member, score in items]
        if not items:
            return []
        members = await self._conn.run("history_windows", self._lowest, *(member for member, _ in items))
        return [key for member in members if (key := _key_of(member)) is not None]

    async def more(self, client: Any) -> None:
        count = READ_BATCH if self._legacy else self._windows
        self._windows = min(self._windows * 2, WINDOWS_READ[1])
        items: list[Any] = await client.zrevrangebyscore(
            self._key, self._high, self._low, start=0, num=count, withscores=True
        )
        if len(items) < count:
            self.keys += await self._parse(items)
            self.done, self.floor = True, None
            return
        lowest = round(items[-1][1])
        ties: list[Any] = await client.zrangebyscore(self._key, lowest, lowest, withscores=True)
        self.keys += await self._parse([item for item in items if round(item[1]) > lowest] + ties)
        self.floor, self._high = lowest, f"({lowest}"

    def take(self, floor: int | None) -> list[_Key]:
        """The keys read at or above ``floor`` (all of them for ``None``), no longer kept."""
        if floor is None:
            taken, self.keys = self.keys, []
        else:
            taken = [key for key in self.keys if key[0] >= floor]
            self.keys = [key for key in self.keys if key[0] < floor]
        return taken


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
                pipe.zrangebyscore(keys.history_at, "-inf", f"({cutoff_us}", start=0, num=PRUNE_WINDOWS)
                pipe.zrangebyscore(
                    keys.history, "-inf", f"({cutoff_us}", start=0, num=PRUNE_BATCH, withscores=True
                )
                found: list[Any] = await pipe.execute()
            members: set[bytes] = set()
            for index, task_id in enumerate(tasks):
                for member in (*found[2 * index], *found[2 * index + 1]):
                    if _entry_of(task_id, member) is not None:
                        members.add(member)
            old_ids = await self._old_members(client, found[-1], members)
            windows = [text(window) for window in found[-2]]
            if not members and not old_ids and not windows:
                return 0
            removed = int(
                await self._conn.run(
                    "history_prune", PRUNE_BATCH, *sorted(members), "", *sorted(old_ids), "", *windows
                )
            )
            reads = 1
            # the script removed every window read without reaching the batch: read on
            while removed < PRUNE_BATCH and len(windows) == PRUNE_WINDOWS and reads < PRUNE_WINDOW_READS:
                aged: list[Any] = await client.zrangebyscore(
                    keys.history_at, "-inf", f"({cutoff_us}", start=0, num=PRUNE_WINDOWS
                )
                windows = [text(window) for window in aged]
                if windows:
                    removed += int(
                        await self._conn.run("history_prune", PRUNE_BATCH - removed, "", "", *windows)
                    )
                reads += 1
            return removed

    async def _old_members(self, client: Any, old: list[Any], members: set[bytes]) -> set[str]:
        """Entries written before key layout 7 past their age (``old``: ids and ends): their
        per-task members put in ``members``; the ids of those whose documents cannot be read
        (their tasks, so their members, are not known: a page leaves out an id whose document is
        gone)."""
        if not old:
            return set()
        ends = {text(entry_id): round(score) for entry_id, score in old}
        docs = await client.hmget(self._keys.history_docs, list(ends))
        stored = [(i, doc) for i, doc in zip(ends, docs, strict=True) if doc is not None]
        read = decode(stored, ends)
        members.update(task_member(e.task_id, ends[e.id], e.id) for e in read if e.id in ends)
        return set(ends) - {e.id for e in read}

    async def query(self, query: HistoryQuery) -> tuple[list[HistoryEntry], str | None]:
        if query.task_id is not None:
            return await self._task_query(query, query.task_id)
        after = query.after()
        high = None if after is None else after[0]
        low = None if query.since is None else to_us(query.since)
        indexes = [
            _EndIndex(self._conn, self._keys, high, low, legacy=False),
            _EndIndex(self._conn, self._keys, high, low, legacy=True),
        ]
        client = await self._conn.ready()
        found: list[HistoryEntry] = []
        with self._conn.errors():
            while len(found) <= query.limit and not all(i.done and not i.keys for i in indexes):
                # each index not read yet, else the one whose floor holds the others back (what
                # it read may all lie below its floor: a window's latest entry pruned, or before
                # since)
                reading = [index for index in indexes if not index.done]
                if first := [index for index in reading if index.floor is None]:
                    for index in first:
                        await index.more(client)
                elif reading:
                    await max(reading, key=lambda index: index.floor or 0).more(client)
                # what every index holds at or above the highest of their floors is read
                floors = [index.floor for index in indexes if not index.done]
                floor = max((f for f in floors if f is not None), default=None)
                # by (end, id): an entry a layout-6 process recorded again beside its batch is in
                # both indexes (its references None and a batch's, which do not compare)
                taken = sorted(
                    (key for index in indexes for key in index.take(floor)),
                    key=lambda key: (key[0], key[1]),
                    reverse=True,
                )
                if after is not None:
                    taken = [key for key in taken if (key[0], key[1]) < after]
                found += await self._read(client, _once(taken, None), query)
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
        last: _Key | None = None
        with self._conn.errors():
            while len(found) <= query.limit:
                batch: list[Any] = await client.zrevrangebylex(
                    self._keys.history_by_task, high, low, start=offset, num=READ_BATCH
                )
                offset += len(batch)
                keys = _once(
                    [key for member in batch if (key := _entry_of(task_id, member)) is not None], last
                )
                last = keys[-1] if keys else last
                found += await self._read(client, keys, query)
                if len(batch) < READ_BATCH:
                    break
        return page(found, query.limit)

    async def _read(self, client: Any, keys: list[_Key], query: HistoryQuery) -> list[HistoryEntry]:
        """The entries of ``keys`` that match ``query``, in that order (gone or unreadable ones
        left out)."""
        if not keys:
            return []
        old = [entry_id for _, entry_id, ref in keys if ref is None]
        refs = [ref for _, _, ref in keys if ref is not None]
        old_docs = iter(await client.hmget(self._keys.history_docs, old) if old else [])
        new_docs = iter(await self._conn.run("history_read", *refs) if refs else [])
        owners: dict[bytes, str | None] = {}
        found: list[HistoryEntry] = []
        for end, entry_id, ref in keys:
            owner = None
            if ref is None:
                doc = next(old_docs)
            else:
                header, doc = next(new_docs), next(new_docs)
                owner = None if header is None else self._owner(header, owners)
            if doc is None:
                continue
            try:
                entry = HistoryEntry.from_bytes(doc, entry_id, end, owner)
            except CorruptRecordError as exc:
                log.error("history entry %r cannot be read (kept in the store as it is): %s", entry_id, exc)
                continue
            if query.matches(entry):
                found.append(entry)
        return found

    @staticmethod
    def _owner(header: bytes, owners: dict[bytes, str | None]) -> str | None:
        """The owner a batch's first line names (``None`` when it names none or cannot be read)."""
        if header not in owners:
            try:
                shared = orjson.loads(header)
            except orjson.JSONDecodeError:
                shared = None
            owner = shared.get("owner") if isinstance(shared, dict) else None
            owners[header] = owner if isinstance(owner, str) else None
        return owners[header]

    async def clear(self) -> None:
        """Delete every entry: the indexes and the batches' counts at once, then the batches
        they counted. A batch written meanwhile keeps its entries, and its number is never
        given again (the counter stays): one deleted here is never another's."""
        keys = self._keys
        client = await self._conn.ready()
        with self._conn.errors():
            async with client.pipeline(transaction=True) as pipe:
                pipe.hkeys(keys.history_live)
                pipe.delete(
                    keys.history, keys.history_docs, keys.history_by_task, keys.history_at, keys.history_live
                )
                batches: list[Any] = (await pipe.execute())[0]
            for first in range(0, len(batches), 1000):
                await client.delete(*(keys.history_batch(text(b)) for b in batches[first : first + 1000]))


__all__ = ["History", "completion_args", "pack", "task_member"]
