"""Contract: firing claimed tasks, completing, renewing, releasing and recovering runs."""

from __future__ import annotations

from datetime import timedelta

import pytest

from backbeat.abc import Store
from backbeat.errors import TaskNotFoundError
from backbeat.model.records import RunOutcome, run_id_for
from tests.contract.helpers import LEASE, MINUTE, SHORT, T0, decide, finished, held, start_run, task
from tests.contract.stores import Backend

SECOND = timedelta(seconds=1)


async def test_fire_creates_leased_runs_and_moves_the_schedule(backend: Backend, store: Store) -> None:
    await store.add([task("a")])
    [claimed] = (await store.claim_due("w1", now=T0, lease=LEASE, limit=10)).tasks
    await backend.pass_time(SHORT)
    before = backend.store_time()
    [result] = await store.fire("w1", [decide(claimed, then=T0 + MINUTE)], now=T0 + SECOND, lease=LEASE)
    [run] = result.runs
    assert (result.task_id, result.skipped, result.removed) == ("a", [], False)
    assert run.id == run_id_for("a", T0) and (run.task_id, run.fire_time) == ("a", T0)
    assert (run.owner, run.attempt) == ("w1", 1)
    # the lease counts from the fire, by the store's clock
    backend.assert_between(run.lease_until, before + LEASE, backend.store_time() + LEASE)
    [listed] = await store.list_runs("a")
    assert listed.lease_until == run.lease_until
    stored = await store.get("a")
    assert stored is not None and (stored.next_run_time, stored.running) == (T0 + MINUTE, 1)
    # the claim was dropped: the task is claimable again as soon as it is due, by anyone
    assert not await store.claim_due("w2", now=T0 + SECOND, lease=LEASE, limit=10)
    [again] = (await store.claim_due("w2", now=T0 + MINUTE, lease=LEASE, limit=10)).tasks
    assert again.id == "a"
    assert [r.id for r in await store.list_runs("a")] == [run.id]


async def test_counts_past_single_digits_are_kept_exactly(store: Store) -> None:
    """Running runs, runs, failures and max_instances of two digits read and write back exactly
    (Redis's scripts look the small ones up instead of converting them)."""
    await store.add([task("a", max_instances=12)])
    [claimed] = (await store.claim_due("w1", now=T0 + 11 * MINUTE, lease=LEASE, limit=10)).tasks
    times = [T0 + i * MINUTE for i in range(13)]
    [result] = await store.fire("w1", [decide(claimed, times, then=T0 + 20 * MINUTE)], now=T0, lease=LEASE)
    assert len(result.runs) == 12 and result.skipped == times[12:]
    stored = await store.get("a")
    assert stored is not None and (stored.running, stored.options.max_instances) == (12, 12)
    await store.complete("w1", [finished(run, RunOutcome.FAILURE) for run in result.runs[:11]])
    stored = await store.get("a")
    assert stored is not None and (stored.running, stored.runs, stored.failures) == (1, 11, 11)
    await store.complete("w1", [finished(result.runs[11])])
    stored = await store.get("a")
    assert stored is not None and (stored.running, stored.runs, stored.failures) == (0, 12, 11)


async def test_fire_respects_max_instances_across_owners(store: Store, peer: Store) -> None:
    await store.add([task("a", max_instances=1)])
    [first] = await start_run(store, "w1", then=T0 + MINUTE)
    assert await store.extend("w1", held(first), now=T0 + MINUTE, lease=LEASE) == {first.id}  # still running
    [claimed] = (await peer.claim_due("w2", now=T0 + MINUTE, lease=LEASE, limit=10)).tasks
    [result] = await peer.fire("w2", [decide(claimed, then=T0 + 2 * MINUTE)], now=T0 + MINUTE, lease=LEASE)
    assert (result.runs, result.skipped) == ([], [T0 + MINUTE])
    stored = await store.get("a")
    assert stored is not None and (stored.running, stored.next_run_time) == (1, T0 + 2 * MINUTE)

    await store.complete("w1", [finished(first)])
    assert len(await start_run(peer, "w2", now=T0 + 2 * MINUTE, then=T0 + 3 * MINUTE)) == 1


async def test_fire_creates_runs_up_to_max_instances_in_one_decision(store: Store) -> None:
    await store.add([task("a", max_instances=2)])
    [claimed] = (await store.claim_due("w1", now=T0 + 2 * MINUTE, lease=LEASE, limit=10)).tasks
    times = [T0, T0 + MINUTE, T0 + 2 * MINUTE]
    [result] = await store.fire("w1", [decide(claimed, times, then=T0 + 3 * MINUTE)], now=T0, lease=LEASE)
    assert [r.fire_time for r in result.runs] == times[:2] and result.skipped == times[2:]
    assert sorted(r.id for r in await store.list_runs()) == sorted(run_id_for("a", t) for t in times[:2])


async def test_fire_keeps_a_change_made_since_the_claim(store: Store) -> None:
    await store.add([task("moved"), task("paused")])
    claim = await store.claim_due("w1", now=T0, lease=LEASE, limit=10)
    await store.update("moved", next_run_time=T0 + timedelta(hours=1))
    await store.update("paused", paused=True)
    results = await store.fire("w1", [decide(t, then=T0 + MINUTE) for t in claim.tasks], now=T0, lease=LEASE)
    assert sorted(r.task_id for r in results) == ["moved", "paused"]
    moved, paused = await store.get("moved"), await store.get("paused")
    assert moved is not None and moved.next_run_time == T0 + timedelta(hours=1)
    assert paused is not None and paused.paused
    assert not (await store.claim_due("w2", now=T0 + 2 * MINUTE, lease=LEASE, limit=10)).tasks


async def test_fire_ignores_decisions_for_tasks_the_owner_does_not_hold(store: Store) -> None:
    await store.add([task("a"), task("b")])
    [claimed] = (await store.claim_due("w1", now=T0, lease=LEASE, limit=1)).tasks
    unclaimed = task("b" if claimed.id == "a" else "a")
    decisions = [decide(claimed, then=T0 + MINUTE), decide(unclaimed, then=T0 + MINUTE)]
    assert await store.fire("w2", decisions, now=T0, lease=LEASE) == []
    results = await store.fire("w1", decisions, now=T0, lease=LEASE)
    assert [r.task_id for r in results] == [claimed.id]
    assert [r.task_id for r in await store.list_runs()] == [claimed.id]
    assert await store.fire("w1", decisions[:1], now=T0, lease=LEASE) == []  # the claim is gone


async def test_fire_removes_a_task_left_with_nothing_to_run(store: Store) -> None:
    await store.add([task("missed-one-shot")])
    [claimed] = (await store.claim_due("w1", now=T0, lease=LEASE, limit=10)).tasks
    [result] = await store.fire("w1", [decide(claimed, [], then=None)], now=T0, lease=LEASE)
    assert (result.runs, result.removed) == ([], True)
    assert await store.get("missed-one-shot") is None


async def test_fire_does_not_duplicate_an_existing_run(store: Store) -> None:
    await store.add([task("a", max_instances=3)])
    await store.enqueue_run("a", fire_time=T0, now=T0 + MINUTE)
    [claimed] = (await store.claim_due("w1", now=T0, lease=LEASE, limit=10)).tasks
    [result] = await store.fire("w1", [decide(claimed, then=T0 + MINUTE)], now=T0, lease=LEASE)
    assert (result.runs, result.skipped) == ([], [])
    assert len(await store.list_runs("a")) == 1


async def test_complete_deletes_runs_and_counts_outcomes(store: Store) -> None:
    await store.add([task("a", max_instances=2)])
    [ok] = await start_run(store, "w1", then=T0 + MINUTE)
    [bad] = await start_run(store, "w1", now=T0 + MINUTE, then=T0 + 2 * MINUTE)
    assert await store.complete("w1", [finished(ok, at=T0 + SECOND)]) == set()
    stored = await store.get("a")
    assert stored is not None
    assert (stored.running, stored.runs, stored.failures, stored.last_outcome) == (1, 1, 0, "success")
    assert stored.last_run_at == T0 + SECOND
    await store.complete("w1", [finished(bad, RunOutcome.FAILURE, at=T0 + MINUTE)])
    stored = await store.get("a")
    assert stored is not None
    assert (stored.running, stored.runs, stored.failures, stored.last_outcome) == (0, 2, 1, "failure")
    assert await store.list_runs() == []
    assert stored.next_run_time == T0 + 2 * MINUTE


async def test_a_one_shot_task_leaves_only_after_its_last_run(store: Store) -> None:
    await store.add([task("once"), task("twice", max_instances=2)])
    claimed = {t.id: t for t in (await store.claim_due("w1", now=T0, lease=LEASE, limit=10)).tasks}
    decisions = [decide(claimed["once"], then=None), decide(claimed["twice"], [T0 - MINUTE, T0], then=None)]
    results = await store.fire("w1", decisions, now=T0, lease=LEASE)
    assert not any(result.removed for result in results)
    [once], [first, last] = (result.runs for result in results)
    assert await store.get("once") is not None, "removed before its run finished"
    await store.complete("w1", [finished(once), finished(first)])
    assert await store.get("once") is None
    assert await store.get("twice") is not None, "removed before its last run finished"
    await store.complete("w1", [finished(last)])
    assert await store.get("twice") is None
    assert await store.list_runs() == []


async def test_complete_returns_the_runs_another_owner_took_over(
    backend: Backend, store: Store, peer: Store
) -> None:
    await store.add([task("a")])
    [run] = await start_run(store, "w1", then=None, lease=SHORT)
    # w1 stalled past its lease: w2 recovers the run
    await backend.pass_time(SHORT)
    before = backend.store_time()
    [recovered] = (await peer.claim_due("w2", now=T0, lease=LEASE, limit=10)).runs
    assert (recovered.id, recovered.owner, recovered.attempt, recovered.recovered) == (run.id, "w2", 2, True)
    assert recovered.task is not None and recovered.task.id == "a"
    backend.assert_between(recovered.lease_until, before + LEASE, backend.store_time() + LEASE)
    assert await store.complete("w1", [finished(run)]) == {run.id}
    assert await store.get("a") is not None, "a completion that was refused removes nothing"
    assert await peer.complete("w2", [finished(recovered)]) == set()
    assert await store.get("a") is None


async def test_retry_at_requeues_the_run_as_waiting(store: Store, peer: Store) -> None:
    await store.add([task("a")])
    [run] = await start_run(store, "w1", then=None)
    retry_at = T0 + 30 * SECOND
    await store.complete("w1", [finished(run, RunOutcome.FAILURE, retry_at=retry_at)])
    [waiting] = await store.list_runs("a")
    assert (waiting.id, waiting.owner, waiting.attempt, waiting.lease_until) == (run.id, None, 2, retry_at)
    stored = await store.get("a")
    assert stored is not None and (stored.running, stored.failures) == (1, 1)
    assert not (await peer.claim_due("w2", now=retry_at - SECOND, lease=LEASE, limit=10)).runs
    [again] = (await peer.claim_due("w2", now=retry_at, lease=LEASE, limit=10)).runs
    assert (again.id, again.owner, again.attempt, again.recovered) == (run.id, "w2", 2, False)


async def test_extend_pushes_the_leases_still_held(backend: Backend, store: Store, peer: Store) -> None:
    await store.add([task("a"), task("b")])
    first, second = await start_run(store, "w1", then=None, lease=SHORT)
    await store.complete("w1", [finished(second)])
    before = backend.store_time()
    extended = await store.extend("w1", held(first, second) | {"nope": 0}, now=T0 + 5 * SECOND, lease=LEASE)
    assert extended == {first.id}
    [run] = await store.list_runs()
    backend.assert_between(run.lease_until, before + LEASE, backend.store_time() + LEASE)
    await backend.pass_time(SHORT)  # past the first lease, not the extended one
    assert not await peer.claim_due("w2", now=T0 + LEASE, lease=LEASE, limit=10)
    assert await peer.extend("w2", held(first), lease=LEASE) == set()
    assert await store.extend("w1", {}, now=T0, lease=LEASE) == set()


async def test_release_lets_another_owner_take_runs_and_claims_at_once(store: Store, peer: Store) -> None:
    await store.add([task("running"), task("claimed", at=T0 + SECOND)])
    [run] = await start_run(store, "w1", then=None)
    [claimed] = (await store.claim_due("w1", now=T0 + SECOND, lease=LEASE, limit=10)).tasks
    await peer.release("w2", leases=held(run), task_ids=[claimed.id], now=T0 + SECOND)  # not w2's: no-op
    assert not await peer.claim_due("w2", now=T0 + 2 * SECOND, lease=LEASE, limit=10)

    await store.release("w1", leases=held(run), task_ids=[claimed.id], now=T0 + 2 * SECOND)
    [waiting] = await store.list_runs()
    assert (waiting.owner, waiting.attempt, waiting.lease_until) == (None, 2, T0 + 2 * SECOND)
    claim = await peer.claim_due("w2", now=T0 + 2 * SECOND, lease=LEASE, limit=10)
    assert [(r.id, r.attempt, r.owner) for r in claim.runs] == [(run.id, 2, "w2")]
    assert [t.id for t in claim.tasks] == ["claimed"]
    assert await store.complete("w1", [finished(run)]) == {run.id}


async def test_an_expired_run_is_recovered_with_its_task_and_the_next_attempt(
    backend: Backend, store: Store, peer: Store
) -> None:
    await store.add([task("a", at=T0)])
    [run] = await start_run(store, "w1", then=T0 + timedelta(hours=1), lease=SHORT)
    assert not (await peer.claim_due("w2", now=T0, lease=SHORT, limit=10)).runs
    await backend.pass_time(SHORT)
    [recovered] = (await peer.claim_due("w2", now=T0, lease=SHORT, limit=10)).runs
    assert (recovered.id, recovered.fire_time, recovered.attempt, recovered.recovered) == (
        run.id,
        T0,
        2,
        True,
    )
    assert recovered.task is not None and recovered.task.next_run_time == T0 + timedelta(hours=1)
    assert not (await store.claim_due("w1", now=T0, lease=LEASE, limit=10)).runs
    await backend.pass_time(SHORT)
    [again] = (await store.claim_due("w1", now=T0, lease=LEASE, limit=10)).runs
    assert (again.attempt, again.owner) == (3, "w1")


async def test_a_run_of_a_removed_task_is_claimed_without_its_task(backend: Backend, store: Store) -> None:
    await store.add([task("a")])
    [run] = await start_run(store, "w1", then=None, lease=SHORT)
    await store.remove(["a"])
    await backend.pass_time(SHORT)
    [orphan] = (await store.claim_due("w2", now=T0, lease=LEASE, limit=10)).runs
    assert orphan.id == run.id and orphan.task is None


async def test_enqueue_run_adds_a_waiting_run(store: Store, peer: Store) -> None:
    await store.add([task("a", at=None, max_instances=2)])
    run = await store.enqueue_run("a", fire_time=T0, now=T0 + SECOND)
    assert run is not None
    assert (run.id, run.fire_time, run.owner, run.attempt) == (run_id_for("a", T0), T0, None, 1)
    assert run.lease_until == T0 + SECOND
    assert await store.enqueue_run("a", fire_time=T0, now=T0) is None, "that run exists"
    assert await store.enqueue_run("a", fire_time=T0 + MINUTE, now=T0) is not None
    assert await store.enqueue_run("a", fire_time=T0 + 2 * MINUTE, now=T0) is None, "max_instances"
    stored = await store.get("a")
    assert stored is not None and stored.running == 2
    claim = await peer.claim_due("w2", now=T0 + SECOND, lease=LEASE, limit=10)
    assert sorted((r.id, r.attempt, r.recovered) for r in claim.runs) == [
        (run_id_for("a", T0), 1, False),
        (run_id_for("a", T0 + MINUTE), 1, False),
    ]
    assert all(r.task is not None and r.task.id == "a" for r in claim.runs)
    with pytest.raises(TaskNotFoundError):
        await store.enqueue_run("nope", fire_time=T0, now=T0)


async def test_list_runs_of_one_task_or_all(store: Store) -> None:
    await store.add([task("a"), task("b")])
    await start_run(store, "w1", then=None)
    assert sorted(r.task_id for r in await store.list_runs()) == ["a", "b"]
    assert [r.id for r in await store.list_runs("b")] == [run_id_for("b", T0)]
    assert await store.list_runs("nope") == []
