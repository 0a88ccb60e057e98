"""Run history for the stores: the memory store's book of entries, and decoding stored ones."""

from __future__ import annotations

import bisect
import logging
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime

from backbeat.errors import CorruptRecordError
from backbeat.model.completed_history import HistoryRow
from backbeat.model.history import PRUNE_BATCH, HistoryEntry, HistoryQuery, encode_cursor, to_us

log = logging.getLogger("backbeat.stores")

_Key = tuple[int, str]


def decode(
    raws: Iterable[tuple[str, bytes | str]], ends: Mapping[str, int] | None = None
) -> list[HistoryEntry]:
    """Decode stored entries (id, JSON), given the ends a store keeps beside the documents
    (epoch microseconds by id) when its documents may leave theirs out; one that cannot be
    read is logged and left out."""
    entries = []
    for entry_id, raw in raws:
        try:
            entries.append(
                HistoryEntry.from_bytes(raw, entry_id, None if ends is None else ends.get(entry_id))
            )
        except CorruptRecordError as exc:
            log.error("history entry %r cannot be read (kept in the store as it is): %s", entry_id, exc)
    return entries


def page(entries: list[HistoryEntry], limit: int) -> tuple[list[HistoryEntry], str | None]:
    """The first ``limit`` of ``entries`` (newest first, one more read than asked for) and the
    next cursor, ``None`` when nothing follows."""
    if len(entries) <= limit:
        return entries, None
    kept = entries[:limit]
    return kept, encode_cursor(kept[-1])


def _key(entry: HistoryEntry) -> _Key:
    return (to_us(entry.ended_at), entry.id)


class MemoryHistory:
    """History entries in process memory, ordered by (end, id) overall and per task."""

    def __init__(self) -> None:
        self._entries: dict[str, HistoryEntry] = {}
        self._all: list[_Key] = []
        self._by_task: dict[str, list[_Key]] = {}

    def clear(self) -> None:
        self._entries.clear()
        self._all.clear()
        self._by_task.clear()

    def record(self, entries: Sequence[HistoryEntry]) -> None:
        for entry in entries:
            if entry.id in self._entries:
                continue
            self._entries[entry.id] = entry
            key = _key(entry)
            bisect.insort(self._all, key)
            bisect.insort(self._by_task.setdefault(entry.task_id, []), key)

    def record_rows(self, rows: Sequence[HistoryRow]) -> None:
        """Record completed runs' entries as a store that keeps documents would read them back."""
        self.record(decode((row[0], row[4]) for row in rows))

    def prune(self, task_ids: Collection[str], *, before: datetime, keep: int) -> int:
        cutoff = (to_us(before), "")
        doomed: list[_Key] = []
        for task_id in task_ids:
            keys = self._by_task.get(task_id, [])
            old = bisect.bisect_left(keys, cutoff)
            doomed += keys[: max(old, len(keys) - keep)]
        doomed += self._all[: min(bisect.bisect_left(self._all, cutoff), PRUNE_BATCH)]
        removed = 0
        for key in set(doomed):
            entry = self._entries.pop(key[1], None)
            if entry is None:
                continue
            removed += 1
            self._all.remove(key)
            task_keys = self._by_task[entry.task_id]
            task_keys.remove(key)
            if not task_keys:
                del self._by_task[entry.task_id]
        return removed

    def query(self, query: HistoryQuery) -> tuple[list[HistoryEntry], str | None]:
        keys = self._all if query.task_id is None else self._by_task.get(query.task_id, [])
        end = len(keys)
        if (after := query.after()) is not None:
            end = bisect.bisect_left(keys, after)
        found: list[HistoryEntry] = []
        for key in reversed(keys[:end]):
            entry = self._entries[key[1]]
            if query.since is not None and entry.ended_at < query.since:
                break
            if query.matches(entry):
                found.append(entry)
                if len(found) > query.limit:
                    break
        return page(found, query.limit)
