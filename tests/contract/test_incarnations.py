"""Contract: a task removed and added again under the same id is a new incarnation, and the
runs the removed one left in flight never touch it: their completion, retry, dead letter,
release or takeover leaves the new task's counts and buffered runs as they were."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from backbeat.abc import Store
from backbeat.model.overlap import Overlap
from backbeat.model.records import Run, RunOutcome, Task, TaskOptions
from tests.contract.helpers import LEASE, MINUTE, SHORT, T0, decide, finished, held, task
from tests.contract.stores import Backend

T1, T2, T3, T4 = (T0 + k * MINUTE for k in range(1, 5))


def incarnation(overlap: Overlap, name: str, *, tags: tuple[str, ...] = ()) -> Task:
    return task("a", name=name, tags=tags, options=TaskOptions(overlap=overlap))


async def fire(
    store: Store, fire_times: list[datetime], *, now: datetime, lease: timedelta = LEASE
) -> tuple[list[Run], list[Run], list[datetime]]:
    """Claim the one due task for ``w1`` and fire ``fire_times``: (runs, buffered, skipped)."""
    [claimed] = (await store.claim_due("w1", now=now, lease=LEASE, limit=10)).tasks
    decision = replace(decide(claimed, fire_times, then=now + MINUTE), overlap=claimed.options.overlap)
    [result] = await store.fire("w1", [decision], now=now, lease=lease)
    return result.runs, result.buffered, result.skipped


async def counts(store: Store) -> tuple[int, int, int, str | None]:
    stored = await store.get("a")
    assert stored is not None
    return stored.running, stored.runs, stored.failures, stored.last_outcome


async def claim_runs(store: Store, owner: str, *, now: datetime) -> list[Run]:
    return (await store.claim_due(owner, now=now, lease=LEASE, limit=10, horizon=now)).runs


async def readd_while_running(store: Store, overlap: Overlap, *, lease: timedelta = LEASE) -> Run:
    """Fire the first incarnation of ``a`` at T0 and hold its run; remove ``a`` and add it again."""
    await store.add([incarnation(overlap, "first")])
    [old], _, _ = await fire(store, [T0], now=T0, lease=lease)
    assert await store.remove(["a"]) == ["a"]
    await store.add([incarnation(overlap, "second")])
    return old


async def test_an_old_run_ending_neither_lowers_the_new_count_nor_starts_its_buffered_run(
    store: Store,
) -> None:
    old = await readd_while_running(store, Overlap.BUFFER_ONE)
    [new], _, _ = await fire(store, [T1], now=T1)
    _, [waiting], _ = await fire(store, [T2], now=T2)
    assert await counts(store) == (2, 0, 0, None)
    listed = {run.id: run.detached for run in await store.list_runs("a")}
    assert listed == {old.id: True, new.id: False, waiting.id: False}

    assert await store.complete("w1", [finished(old, at=T3)]) == set()
    assert await counts(store) == (2, 0, 0, None)
    assert await claim_runs(store, "w2", now=T4) == []  # the buffered run still waits for `new`
    assert {run.id for run in await store.list_runs("a")} == {new.id, waiting.id}

    await store.complete("w1", [finished(new, at=T3)])
    [started] = await claim_runs(store, "w2", now=T4)
    assert started.id == waiting.id and await counts(store) == (1, 1, 0, "success")


async def test_under_skip_the_new_task_never_runs_twice_at_once(store: Store) -> None:
    old = await readd_while_running(store, Overlap.SKIP)
    [new], _, _ = await fire(store, [T1], now=T1)
    await store.complete("w1", [finished(old, at=T1)])
    assert await fire(store, [T2], now=T2) == ([], [], [T2])
    assert {run.id for run in await store.list_runs("a")} == {new.id}


async def test_an_old_run_that_held_the_only_slot_does_not_count_against_the_new_task(
    store: Store,
) -> None:
    await readd_while_running(store, Overlap.SKIP)
    assert await counts(store) == (0, 0, 0, None)
    [new], _, _ = await fire(store, [T1], now=T1)
    assert new.fire_time == T1


async def test_an_old_run_retried_stays_apart_from_the_new_task(store: Store) -> None:
    old = await readd_while_running(store, Overlap.BUFFER_ONE)
    [new], _, _ = await fire(store, [T1], now=T1)
    retry = finished(old, RunOutcome.FAILURE, at=T1, retry_at=T2)
    assert await store.complete("w1", [retry]) == set()
    assert await counts(store) == (1, 0, 0, None)
    [again] = await claim_runs(store, "w2", now=T2)
    # not the new task's snapshot: the engine ends it as a run of a removed task
    assert again.id == old.id and again.task is None
    await store.complete("w2", [finished(again, RunOutcome.CANCELLED, at=T3)])
    assert await counts(store) == (1, 0, 0, None)
    assert {run.id for run in await store.list_runs("a")} == {new.id}


async def test_an_old_run_dead_lettered_keeps_no_snapshot_of_the_new_task(store: Store) -> None:
    old = await readd_while_running(store, Overlap.ALLOW_ALL)
    dead = replace(finished(old, RunOutcome.FAILURE, at=T1), dead_letter=True)
    assert await store.complete("w1", [dead]) == set()
    [letter] = await store.dead_letters("a")
    assert (letter.id, letter.task) == (old.id, None)
    assert await counts(store) == (0, 0, 0, None)
    assert await store.list_runs("a") == []
    # run again on purpose, it is a run of the task stored now, counted as any other
    assert await store.requeue_dead_letter(letter.id, now=T2) is not None
    [again] = await claim_runs(store, "w2", now=T2)
    assert again.id == old.id and again.task is not None and again.task.name == "second"
    await store.complete("w2", [finished(again, at=T3)])
    assert await counts(store) == (0, 1, 0, "success")


async def test_a_task_replaced_in_place_keeps_its_runs(store: Store) -> None:
    await store.add([incarnation(Overlap.BUFFER_ONE, "first")])
    [run], _, _ = await fire(store, [T0], now=T0)
    await store.add([incarnation(Overlap.BUFFER_ONE, "second")], replace=True)
    _, [waiting], _ = await fire(store, [T1], now=T1)
    await store.complete("w1", [finished(run, at=T2)])
    [started] = await claim_runs(store, "w2", now=T2)
    assert started.id == waiting.id and await counts(store) == (1, 1, 0, "success")


async def test_an_old_run_released_is_taken_without_the_new_task(store: Store) -> None:
    old = await readd_while_running(store, Overlap.BUFFER_ONE)
    [new], _, _ = await fire(store, [T1], now=T1)
    await store.release("w1", leases=held(old), task_ids=[], now=T1)
    [taken] = await claim_runs(store, "w2", now=T2)
    assert taken.id == old.id and taken.task is None
    await store.complete("w2", [finished(taken, RunOutcome.CANCELLED, at=T2)])
    assert await counts(store) == (1, 0, 0, None)
    assert {run.id for run in await store.list_runs("a")} == {new.id}


async def test_an_old_run_taken_over_after_its_lease_ended_is_taken_without_the_new_task(
    store: Store, backend: Backend
) -> None:
    old = await readd_while_running(store, Overlap.BUFFER_ONE, lease=SHORT)
    await backend.pass_time(SHORT)
    [taken] = await claim_runs(store, "w2", now=T1)
    assert (taken.id, taken.recovered, taken.task) == (old.id, True, None)
    await store.complete("w2", [finished(taken, RunOutcome.CANCELLED, at=T1)])
    assert await counts(store) == (0, 0, 0, None) and await store.list_runs("a") == []


async def test_runs_of_a_task_removed_by_tag_stay_apart_from_the_next_one(store: Store) -> None:
    await store.add([incarnation(Overlap.BUFFER_ONE, "first", tags=("t",))])
    [old], _, _ = await fire(store, [T0], now=T0)
    assert await store.remove_by_tag("t") == ["a"]
    await store.add([incarnation(Overlap.BUFFER_ONE, "second")])
    await fire(store, [T1], now=T1)
    await store.complete("w1", [finished(old, at=T2)])
    assert await counts(store) == (1, 0, 0, None)
    _, buffered, _ = await fire(store, [T2], now=T2)
    assert [run.fire_time for run in buffered] == [T2]
    assert await claim_runs(store, "w2", now=T3) == []


async def test_the_new_task_firing_the_old_runs_fire_time_adopts_that_run(store: Store) -> None:
    old = await readd_while_running(store, Overlap.ALLOW_ALL)
    # the old run failed and waits for its retry; the new task fires the same fire time (a
    # catch-up of a missed time, a backfill): run ids are task@fire_time, so it is that run
    await store.complete("w1", [finished(old, RunOutcome.FAILURE, at=T1, retry_at=T2)])
    assert await fire(store, [T0], now=T1) == ([], [], [])
    assert await counts(store) == (1, 0, 0, None)  # counted as the new task's run
    [listed] = await store.list_runs("a")
    assert (listed.id, listed.detached) == (old.id, False)
    [again] = await claim_runs(store, "w2", now=T2)
    assert again.id == old.id and again.task is not None and again.task.name == "second"
    await store.complete("w2", [finished(again, at=T3)])
    assert await counts(store) == (0, 1, 0, "success")


async def test_enqueuing_the_old_runs_fire_time_adopts_that_run(store: Store) -> None:
    old = await readd_while_running(store, Overlap.ALLOW_ALL)
    assert await store.enqueue_run("a", fire_time=T0, now=T1) is None  # that run exists
    assert await counts(store) == (1, 0, 0, None)
    await store.complete("w1", [finished(old, at=T1)])
    assert await counts(store) == (0, 1, 0, "success")


async def test_a_fire_without_the_claim_adopts_nothing(store: Store) -> None:
    """Another owner (its claim lapsed and was taken over, a stale process) fires nothing."""
    old = await readd_while_running(store, Overlap.ALLOW_ALL)
    [claimed] = (await store.claim_due("w1", now=T1, lease=LEASE, limit=10)).tasks
    decision = replace(decide(claimed, [T0], then=T1 + MINUTE), overlap=claimed.options.overlap)
    assert await store.fire("w9", [decision], now=T1, lease=LEASE) == []
    [listed] = await store.list_runs("a")
    detached = listed.detached
    await store.complete("w1", [finished(old, at=T2)])
    assert (detached, await counts(store)) == (True, (0, 0, 0, None))
