"""Contract: run history, recorded, paged newest first, filtered and pruned a task at a time."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from backbeat.abc import Store
from backbeat.model.history import (
    EPOCH,
    FAILED,
    PRUNE_BATCH,
    HistoryEntry,
    HistoryOutcome,
    HistoryQuery,
    entry_id,
)
from tests.contract.helpers import T0, task
from tests.contract.stores import Backend

SECOND = timedelta(seconds=1)


def entry(
    task_id: str,
    ended: datetime,
    outcome: HistoryOutcome = HistoryOutcome.SUCCESS,
    *,
    attempt: int = 1,
    fire: datetime | None = None,
) -> HistoryEntry:
    fire_time = fire or ended - SECOND
    run_id = f"{task_id}@{fire_time.isoformat()}"
    return HistoryEntry(
        id=entry_id(run_id, attempt, outcome),
        task_id=task_id,
        task_name=f"name-{task_id}",
        run_id=run_id,
        fire_time=fire_time,
        started_at=None if outcome == HistoryOutcome.MISSED else fire_time,
        ended_at=ended,
        outcome=outcome,
        attempt=attempt,
        error_type="builtins.ValueError" if outcome in FAILED else None,
        error="card declined" if outcome in FAILED else None,
        owner="host-a:4242:abcd1234",
    )


async def everything(store: Store, query: HistoryQuery) -> list[HistoryEntry]:
    """Every page of ``query``, followed by its cursors."""
    found: list[HistoryEntry] = []
    cursor = None
    while True:
        page, cursor = await store.run_history(
            HistoryQuery(
                task_id=query.task_id,
                outcomes=query.outcomes,
                since=query.since,
                limit=query.limit,
                cursor=cursor,
            )
        )
        found += page
        if cursor is None:
            return found


async def test_entries_are_listed_newest_first_as_recorded(store: Store) -> None:
    failed = entry("pay", T0 + 2 * SECOND, HistoryOutcome.DEAD_LETTERED, attempt=3)
    failed.error = 'card "declined"\n\\ é ✓ \u0000'  # kept as it was, whatever the store's encoding
    failed.args = {"amount": 20.000000000000004, "ids": [1, 2**53 + 1]}
    ok = entry("pay", T0 + SECOND)
    missed = entry("report", T0 + 3 * SECOND, HistoryOutcome.MISSED)
    await store.record_history([ok, failed])
    await store.record_history([missed])

    page, cursor = await store.run_history(HistoryQuery())

    assert [e.id for e in page] == [missed.id, failed.id, ok.id]
    assert cursor is None
    assert page[1] == failed
    assert (page[1].duration, page[1].host, page[1].pid) == (1.0, "host-a", 4242)
    assert page[0].started_at is None and page[0].duration is None


async def test_filters_by_task_outcome_and_end_time(store: Store) -> None:
    entries = [
        entry("pay", T0 + SECOND),
        entry("pay", T0 + 2 * SECOND, HistoryOutcome.RETRY_SCHEDULED),
        entry("mail", T0 + 3 * SECOND, HistoryOutcome.FAILURE),
        entry("pay", T0 + 4 * SECOND, HistoryOutcome.CANCELLED),
    ]
    await store.record_history(entries)

    def ids(page: tuple[list[HistoryEntry], str | None]) -> list[str]:
        return [e.id for e in page[0]]

    assert ids(await store.run_history(HistoryQuery(task_id="pay"))) == [
        entries[3].id,
        entries[1].id,
        entries[0].id,
    ]
    assert ids(await store.run_history(HistoryQuery(outcomes=FAILED))) == [entries[2].id, entries[1].id]
    assert ids(await store.run_history(HistoryQuery(task_id="pay", outcomes=FAILED))) == [entries[1].id]
    assert ids(await store.run_history(HistoryQuery(since=T0 + 3 * SECOND))) == [entries[3].id, entries[2].id]
    assert ids(await store.run_history(HistoryQuery(task_id="nobody"))) == []


async def test_pages_follow_each_other_without_gaps_or_repeats_across_equal_end_times(store: Store) -> None:
    same_end = [entry(f"t{i}", T0, fire=T0 - i * SECOND) for i in range(5)]
    others = [entry("t0", T0 + i * SECOND, fire=T0 + i * SECOND - SECOND / 2) for i in range(1, 4)]
    await store.record_history(same_end + others)

    first, cursor = await store.run_history(HistoryQuery(limit=2))
    assert len(first) == 2 and cursor is not None
    found = await everything(store, HistoryQuery(limit=2))

    expected = sorted(same_end + others, key=lambda e: (e.ended_at, e.id), reverse=True)
    assert [e.id for e in found] == [e.id for e in expected]
    per_task = await everything(store, HistoryQuery(task_id="t0", limit=1))
    assert [e.id for e in per_task] == [e.id for e in expected if e.task_id == "t0"]


async def test_pages_and_since_hold_among_entries_microseconds_to_milliseconds_apart(store: Store) -> None:
    # ends close enough that a store may keep many of them together (Redis: a 10 ms window of a
    # batch), recorded in two calls whose ends interleave
    ends = [T0 + timedelta(microseconds=137 * i) for i in range(120)]
    entries = [entry(f"t{i % 4}", ended, fire=T0 - i * SECOND) for i, ended in enumerate(ends)]
    await store.record_history(entries[::2])
    await store.record_history(entries[1::2])
    expected = sorted(entries, key=lambda e: (e.ended_at, e.id), reverse=True)

    for limit in (1, 7, 50):
        found = await everything(store, HistoryQuery(limit=limit))
        assert [e.id for e in found] == [e.id for e in expected]
    since = ends[61]
    found = await everything(store, HistoryQuery(limit=5, since=since))
    assert [e.id for e in found] == [e.id for e in expected if e.ended_at >= since]
    per_task = await everything(store, HistoryQuery(task_id="t1", limit=3, since=since))
    assert [e.id for e in per_task] == [e.id for e in expected if e.task_id == "t1" and e.ended_at >= since]


async def test_a_page_across_tasks_passes_entries_kept_below_the_lowest_end_read(store: Store) -> None:
    # one call's entries 9 ms apart, then twenty calls' entries ending between them: a store that
    # reads ends in groups (Redis: a call's 10 ms window, scored by its latest end) has read the
    # first call's earliest entry before the group of its end
    window = T0 - timedelta(microseconds=T0.microsecond % 10_000)
    wide = [entry("wide", window + timedelta(microseconds=us)) for us in (1, 9_000)]
    await store.record_history(wide)
    singles = [entry(f"t{i}", window + timedelta(microseconds=5_000 + i)) for i in range(1, 21)]
    for single in singles:
        await store.record_history([single])
    expected = sorted([*wide, *singles], key=lambda e: (e.ended_at, e.id), reverse=True)

    for limit in (100, 21, 3):
        found = await everything(store, HistoryQuery(limit=limit))
        assert [e.id for e in found] == [e.id for e in expected]


async def test_since_holds_among_ends_of_different_lengths_in_the_first_10_ms_of_1970(store: Store) -> None:
    # 5 us and 40 us: "5" > "40" as text (Redis: the latest end of a batch's window)
    first = [entry(f"e{us}", EPOCH + timedelta(microseconds=us)) for us in (5, 40)]
    await store.record_history(first)
    await store.record_history([entry("e20", EPOCH + timedelta(microseconds=20))])
    since = EPOCH + timedelta(microseconds=30)
    found = await everything(store, HistoryQuery(limit=10, since=since))
    assert [e.task_id for e in found] == ["e40"]
    found = await everything(store, HistoryQuery(limit=1))
    assert [e.task_id for e in found] == ["e40", "e20", "e5"]


async def test_recording_an_entry_again_keeps_one(store: Store, peer: Store) -> None:
    done = entry("pay", T0)
    await store.record_history([done])
    await peer.record_history([done])
    page, _ = await peer.run_history(HistoryQuery())
    assert [e.id for e in page] == [done.id]


async def test_an_entry_given_twice_in_one_call_is_recorded_once(store: Store) -> None:
    done, other = entry("pay", T0), entry("pay", T0 + SECOND)
    await store.record_history([done, other, done])
    assert [e.id for e in await everything(store, HistoryQuery())] == [other.id, done.id]
    assert [e.id for e in await everything(store, HistoryQuery(task_id="pay"))] == [other.id, done.id]
    assert await store.prune_history(["pay"], before=T0 + 2 * SECOND, keep=0) == 2
    assert await store.run_history(HistoryQuery()) == ([], None)


async def test_pruning_keeps_each_named_tasks_newest_and_drops_old_entries_of_any_task(store: Store) -> None:
    pay = [entry("pay", T0 + i * SECOND) for i in range(6)]
    quiet = [entry("quiet", T0 - timedelta(days=9) + i * SECOND) for i in range(3)]
    recent = entry("quiet", T0)
    await store.record_history([*pay, *quiet, recent])

    removed = await store.prune_history(["pay"], before=T0 - timedelta(days=7), keep=4)

    assert removed == 5  # two of pay's beyond its newest four, and quiet's three old ones
    left = await everything(store, HistoryQuery())
    assert [e.id for e in left] == [e.id for e in [pay[5], pay[4], pay[3], pay[2], recent]]
    assert await store.prune_history(["pay"], before=T0 - timedelta(days=7), keep=4) == 0


async def test_age_pruning_removes_a_bounded_batch_a_call_and_says_when_more_may_be_left(
    backend: Backend, store: Store
) -> None:
    old = [entry(f"once-{i}", T0 - timedelta(days=8, milliseconds=i)) for i in range(2 * PRUNE_BATCH + 500)]
    await store.record_history([*old, entry("pay", T0)])

    removed = [await store.prune_history((), before=T0 - timedelta(days=7), keep=10)]
    while removed[-1] >= PRUNE_BATCH:
        assert len(removed) < 4
        removed.append(await store.prune_history((), before=T0 - timedelta(days=7), keep=10))

    assert removed[0] >= PRUNE_BATCH  # "more may be left"
    if not backend.prunes_a_batch_per_shard:
        assert removed[0] < len(old)
    assert sum(removed) == len(old)
    assert [e.task_id for e in await everything(store, HistoryQuery())] == ["pay"]


async def test_age_pruning_reaches_old_entries_past_ends_a_count_prune_emptied(store: Store) -> None:
    # a task's entries its count pruned leave nothing at their ends to remove (on Redis: the
    # index windows of a batch that lives on); an age prune must reach the old entries past
    # them, or say that more may be left: else the engine waits a minute, for ever behind
    old = T0 - timedelta(days=8)
    pays = [entry("pay", old + timedelta(milliseconds=20 * i)) for i in range(PRUNE_BATCH + 500)]
    once = entry("once", old + timedelta(minutes=5))
    await store.record_history([*pays, once])
    assert await store.prune_history(["pay"], before=EPOCH, keep=0) == len(pays)

    assert await store.prune_history((), before=T0 - timedelta(days=7), keep=10) == 1
    assert await everything(store, HistoryQuery()) == []


async def test_age_pruning_of_a_named_task_uses_the_cutoff(store: Store) -> None:
    old, new = entry("pay", T0 - 10 * SECOND), entry("pay", T0)
    await store.record_history([old, new])
    assert await store.prune_history(["pay"], before=T0 - SECOND, keep=100) == 1
    assert [e.id for e in (await store.run_history(HistoryQuery()))[0]] == [new.id]


async def test_removing_a_task_keeps_its_history_and_clear_forgets_it(store: Store) -> None:
    await store.add([task("pay")])
    await store.record_history([entry("pay", T0)])
    await store.remove(["pay"])
    assert len((await store.run_history(HistoryQuery(task_id="pay")))[0]) == 1
    await store.clear()
    assert (await store.run_history(HistoryQuery())) == ([], None)


async def test_ids_and_texts_of_any_characters_are_kept_exactly(store: Store) -> None:
    # separators of the stores' packed arguments, a '#' inside the task id, non-ASCII text
    odd = entry("t|1,2#x@ü", T0 + SECOND, HistoryOutcome.FAILURE)
    odd.error, odd.task_name, odd.args = 'nope | 1,2 "quoted"\n€', "naïve,name", {"args": ["ü", 1]}
    plain = entry("plain", T0 + 2 * SECOND)
    plain.started_at, plain.owner = None, None
    await store.record_history([odd, plain])
    assert await everything(store, HistoryQuery()) == [plain, odd]
    assert await everything(store, HistoryQuery(task_id=odd.task_id)) == [odd]


async def test_an_entry_that_ended_before_1970_is_refused_naming_it_with_its_batch(store: Store) -> None:
    # Redis members spell an end in 18 digits since 1970: no store keeps an earlier one, so
    # history moves between stores and reads the same everywhere
    kept = entry("kept", T0)
    await store.record_history([kept])
    before_1970 = entry("old", datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC))

    # entries of several tasks: a sharded store's batch spans its shards, none of which writes
    newer = [entry(f"new-{i}", T0 + SECOND) for i in range(8)]
    with pytest.raises(ValueError, match=rf"history entry {re.escape(repr(before_1970.id))} .*before 1970"):
        await store.record_history([*newer, before_1970])

    assert [e.id for e in await everything(store, HistoryQuery())] == [kept.id]
    await store.record_history([entry("at-1970", EPOCH)])  # the epoch itself is kept
    assert len(await everything(store, HistoryQuery())) == 2


async def test_an_id_recorded_again_with_another_end_is_kept_once_where_ids_key_entries(
    backend: Backend, store: Store, peer: Store
) -> None:
    # no flow of the engine sends one (a completion sent again after a lost reply, and the
    # engine's recording of a run whose completion found it gone, send the run's one end): only
    # a record_history call by hand can. The stores keyed by (task, end, id) keep both, each
    # listed once and pruned as any entry (Backend.history_keyed_by_id says why)
    first = entry("pay", T0)
    again = entry("pay", T0 + SECOND, fire=first.fire_time)
    assert again.id == first.id
    await store.record_history([first])
    await peer.record_history([again, first])

    kept = [(first.id, T0)] if backend.history_keyed_by_id else [(first.id, T0 + SECOND), (first.id, T0)]
    for query in (HistoryQuery(), HistoryQuery(task_id="pay"), HistoryQuery(limit=1)):
        assert [(e.id, e.ended_at) for e in await everything(peer, query)] == kept
    assert await peer.prune_history(["pay"], before=T0 + 2 * SECOND, keep=0) == len(kept)
    assert await peer.run_history(HistoryQuery()) == ([], None)
