"""Contract: overlap policies in ``fire`` (run, buffer or skip a fire time while a run of its
task exists) and buffered runs started, oldest first, when a run of their task ends."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from backbeat.abc import Store
from backbeat.model.overlap import BUFFERED_UNTIL, Overlap
from backbeat.model.records import FireResult, Run, RunOutcome, Task, TaskOptions
from tests.contract.helpers import LEASE, MINUTE, T0, decide, finished, held, task

T1, T2, T3, T4 = (T0 + k * MINUTE for k in range(1, 5))


def overlapping(
    task_id: str, overlap: Overlap, *, max_instances: int = 1, tags: tuple[str, ...] = ()
) -> Task:
    return task(task_id, tags=tags, options=TaskOptions(overlap=overlap, max_instances=max_instances))


async def fire_at(store: Store, owner: str, fire_times: list[datetime], *, now: datetime) -> FireResult:
    """Claim the one due task and fire ``fire_times`` with the policy of its snapshot."""
    [claimed] = (await store.claim_due(owner, now=now, lease=LEASE, limit=10)).tasks
    decision = replace(decide(claimed, fire_times, then=now + MINUTE), overlap=claimed.options.overlap)
    [result] = await store.fire(owner, [decision], now=now, lease=LEASE)
    return result


async def claim_runs(store: Store, owner: str, *, now: datetime) -> list[Run]:
    return (await store.claim_due(owner, now=now, lease=LEASE, limit=10, horizon=now)).runs


async def test_buffer_one_keeps_one_fire_time_and_starts_it_when_the_run_ends(
    store: Store, peer: Store
) -> None:
    await store.add([overlapping("a", Overlap.BUFFER_ONE)])
    [running] = (await fire_at(store, "w1", [T0], now=T0)).runs
    result = await fire_at(peer, "w2", [T1, T2], now=T2)
    assert result.runs == [] and result.skipped == [T2]
    [waiting] = result.buffered
    assert (waiting.fire_time, waiting.owner, waiting.buffered) == (T1, None, True)
    stored = await store.get("a")
    assert stored is not None and stored.running == 2
    listed = {run.id: run for run in await store.list_runs("a")}
    assert listed[waiting.id].buffered and listed[waiting.id].lease_until == BUFFERED_UNTIL
    assert not listed[running.id].buffered
    # nobody may take it while the run goes on, however late it gets
    assert await claim_runs(peer, "w2", now=T4) == []

    await store.complete("w1", [finished(running, at=T3)])
    [started] = await claim_runs(peer, "w2", now=T3)
    assert (started.id, started.owner, started.attempt) == (waiting.id, "w2", 1)
    assert started.task is not None and started.task.id == "a"
    assert started.fencing_token > running.fencing_token
    await peer.complete("w2", [finished(started, at=T3)])
    assert await store.list_runs("a") == []


async def test_buffer_all_runs_every_fire_time_one_after_another(store: Store) -> None:
    await store.add([overlapping("a", Overlap.BUFFER_ALL)])
    [running] = (await fire_at(store, "w1", [T0], now=T0)).runs
    result = await fire_at(store, "w1", [T1, T2, T3], now=T3)
    assert ([r.fire_time for r in result.buffered], result.skipped) == ([T1, T2, T3], [])
    order: list[datetime] = []
    current = running
    for _ in range(3):
        await store.complete("w1", [finished(current, at=T4)])
        [current] = await claim_runs(store, "w1", now=T4)
        order.append(current.fire_time)
        assert await claim_runs(store, "w1", now=T4) == []  # one at a time
    assert order == [T1, T2, T3]
    await store.complete("w1", [finished(current, at=T4)])
    assert await store.list_runs("a") == [] and await claim_runs(store, "w1", now=T4) == []


async def test_skip_and_allow_all(store: Store) -> None:
    await store.add([overlapping("s", Overlap.SKIP), overlapping("a", Overlap.ALLOW_ALL, max_instances=2)])
    claimed = (await store.claim_due("w1", now=T0, lease=LEASE, limit=10)).tasks
    decisions = [replace(decide(t, [T0], then=T1), overlap=t.options.overlap) for t in claimed]
    await store.fire("w1", decisions, now=T0, lease=LEASE)
    claimed = (await store.claim_due("w1", now=T2, lease=LEASE, limit=10)).tasks
    decisions = [replace(decide(t, [T1, T2], then=T3), overlap=t.options.overlap) for t in claimed]
    results = {r.task_id: r for r in await store.fire("w1", decisions, now=T2, lease=LEASE)}
    assert (results["s"].runs, results["s"].buffered, results["s"].skipped) == ([], [], [T1, T2])
    assert [r.fire_time for r in results["a"].runs] == [T1] and results["a"].skipped == [T2]
    assert results["a"].buffered == []


async def test_a_retry_keeps_the_buffered_run_waiting_and_a_dead_letter_starts_it(store: Store) -> None:
    await store.add([overlapping("a", Overlap.CANCEL_OTHER)])
    [running] = (await fire_at(store, "w1", [T0], now=T0)).runs
    [waiting] = (await fire_at(store, "w1", [T1], now=T1)).buffered
    retry = replace(finished(running, RunOutcome.FAILURE, at=T1), retry_at=T2)
    assert await store.complete("w1", [retry]) == set()
    [again] = await claim_runs(store, "w1", now=T2)
    assert again.id == running.id and again.attempt == 2  # the retry, not the buffered run
    dead = replace(finished(again, RunOutcome.FAILURE, at=T3), dead_letter=True)
    await store.complete("w1", [dead])
    [started] = await claim_runs(store, "w1", now=T3)
    assert started.id == waiting.id


async def test_buffered_runs_leave_with_their_task_and_its_running_run_finishes(store: Store) -> None:
    await store.add([overlapping("a", Overlap.BUFFER_ALL)])
    [running] = (await fire_at(store, "w1", [T0], now=T0)).runs
    assert len((await fire_at(store, "w1", [T1, T2], now=T2)).buffered) == 2
    await store.remove(["a"])
    assert [run.id for run in await store.list_runs("a")] == [running.id]
    assert await store.complete("w1", [finished(running, at=T2)]) == set()
    assert await store.list_runs() == [] and await claim_runs(store, "w1", now=T3) == []
    # a task of the same id added again starts afresh
    await store.add([overlapping("a", Overlap.BUFFER_ALL)])
    assert len((await fire_at(store, "w1", [T3], now=T3)).runs) == 1


async def test_buffered_runs_leave_with_clear(store: Store) -> None:
    await store.add([overlapping("a", Overlap.BUFFER_ONE)])
    await fire_at(store, "w1", [T0], now=T0)
    assert len((await fire_at(store, "w1", [T1], now=T1)).buffered) == 1
    await store.clear()
    await store.add([overlapping("a", Overlap.BUFFER_ONE)])
    [running] = (await fire_at(store, "w1", [T0], now=T0)).runs
    await store.complete("w1", [finished(running, at=T1)])
    assert await claim_runs(store, "w1", now=T2) == []  # nothing left from before the clear


async def test_a_released_running_run_keeps_its_place_ahead_of_the_buffered_one(store: Store) -> None:
    await store.add([overlapping("a", Overlap.BUFFER_ONE)])
    [running] = (await fire_at(store, "w1", [T0], now=T0)).runs
    [waiting] = (await fire_at(store, "w1", [T1], now=T1)).buffered
    await store.release("w1", leases=held(running), task_ids=[], now=T1)
    [taken] = await claim_runs(store, "w2", now=T2)
    assert taken.id == running.id and waiting.id in {r.id for r in await store.list_runs("a")}


async def test_buffered_runs_leave_with_tasks_removed_by_tag(store: Store) -> None:
    await store.add([overlapping("a", Overlap.BUFFER_ONE, tags=("t",))])
    [running] = (await fire_at(store, "w1", [T0], now=T0)).runs
    assert len((await fire_at(store, "w1", [T1], now=T1)).buffered) == 1
    assert await store.remove_by_tag("t") == ["a"]
    assert [run.id for run in await store.list_runs()] == [running.id]
