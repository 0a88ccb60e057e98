"""The memory store's lazy heaps: an entry counts only while its seq is its id's current one."""

from __future__ import annotations

import heapq
from datetime import UTC, datetime, timedelta

from backbeat.stores._heaps import HeapEntry, compact, pop_first, top

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


def heap_of(entries: list[HeapEntry]) -> list[HeapEntry]:
    heapq.heapify(entries)
    return entries


def test_the_top_skips_and_drops_stale_entries() -> None:
    current = {"a": 2, "b": 1}
    heap = heap_of([(at(1), 0, "a"), (at(2), 1, "b"), (at(3), 2, "a"), (at(0), 5, "gone")])
    assert top(heap, current.get) == at(2)
    assert sorted(heap) == [(at(2), 1, "b"), (at(3), 2, "a")]
    current.pop("b")
    assert top(heap, current.get) == at(3)
    current.clear()
    assert top(heap, current.get) is None
    assert heap == []


def test_pop_first_takes_the_earliest_current_entry_within_its_heaps_bound() -> None:
    current = {"a": 0, "b": 1, "c": 2}
    early = heap_of([(at(5), 0, "a")])
    late = heap_of([(at(1), 1, "b"), (at(9), 2, "c")])
    heaps = [(early, at(10)), (late, at(4))]
    assert pop_first(heaps, current.get) == "b"
    assert pop_first(heaps, current.get) == "a"
    assert pop_first(heaps, current.get) is None  # c is past its heap's bound
    assert late == [(at(9), 2, "c")]


def test_compact_keeps_only_current_entries_as_a_heap() -> None:
    current = {"a": 3, "b": 1}
    heap = heap_of([(at(4), 0, "a"), (at(2), 1, "b"), (at(1), 3, "a"), (at(0), 7, "gone")])
    kept = compact(heap, current.get)
    assert sorted(kept) == [(at(1), 3, "a"), (at(2), 1, "b")]
    assert heapq.heappop(kept) == (at(1), 3, "a")
