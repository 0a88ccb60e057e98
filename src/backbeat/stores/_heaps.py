"""Heaps of ``(time, seq, id)`` with lazy invalidation, as the memory store keeps its due tasks,
claims, run leases and waiting runs.

An entry is current only while its ``seq`` is the one recorded for its id (``current(id)``), so
rescheduling an item is one push and a stale entry is dropped once it reaches the top: taking
``k`` items costs ``O(k log n)``. The owner compacts a heap once stale entries pile up.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import TypeAlias

HeapEntry: TypeAlias = tuple[datetime, int, str]
Current: TypeAlias = Callable[[str], int | None]
"""The ``seq`` of an id's current entry (``None``: the id is gone)."""


def top(heap: list[HeapEntry], current: Current) -> datetime | None:
    """The time of the earliest current entry, popping the stale ones above it."""
    while heap:
        key, seq, item_id = heap[0]
        if current(item_id) == seq:
            return key
        heapq.heappop(heap)
    return None


def pop_first(heaps: Iterable[tuple[list[HeapEntry], datetime]], current: Current) -> str | None:
    """Pop the earliest current entry that is at or before its heap's bound; its id."""
    best: list[HeapEntry] | None = None
    for heap, bound in heaps:
        key = top(heap, current)
        if key is not None and key <= bound and (best is None or heap[0] < best[0]):
            best = heap
    return None if best is None else heapq.heappop(best)[2]


def compact(heap: list[HeapEntry], current: Current) -> list[HeapEntry]:
    """A heap of the current entries of ``heap``."""
    kept = [entry for entry in heap if current(entry[2]) == entry[1]]
    heapq.heapify(kept)
    return kept


__all__ = ["Current", "HeapEntry", "compact", "pop_first", "top"]
