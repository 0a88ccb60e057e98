"""Contract: claiming due tasks and claimable runs, leases and their expiry, wake-ups."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import timedelta

from backbeat.abc import Store
from tests.contract.helpers import LEASE, MINUTE, SHORT, T0, decide, held, start_run, task
from tests.contract.stores import Backend

SECOND = timedelta(seconds=1)


async def test_only_due_tasks_are_claimed_in_next_run_time_order(store: Store) -> None:
    await store.add(
        [
            task("late", at=T0 + 3 * SECOND),
            task("first", at=T0 + SECOND),
            task("second", at=T0 + 2 * SECOND),
            task("future", at=T0 + MINUTE),
            task("never", at=None),
        ]
    )
    claim = await store.claim_due("w1", now=T0 + 5 * SECOND, lease=LEASE, limit=10)
    assert [t.id for t in claim.tasks] == ["first", "second", "late"]
    assert claim.runs == []


async def test_a_horizon_claims_tasks_due_soon_but_never_a_run_before_its_lease_ends(
    backend: Backend, store: Store, peer: Store
) -> None:
    await store.add([task("soon", at=T0 + SECOND), task("later", at=T0 + MINUTE), task("held", at=T0)])
    [run] = await start_run(store, "w1", now=T0, lease=SHORT)  # "held" runs, leased to w1
    horizon = T0 + LEASE + SECOND
    claim = await peer.claim_due("w2", now=T0 + LEASE, lease=LEASE, limit=10, horizon=horizon)
    assert [t.id for t in claim.tasks] == ["soon"]
    assert claim.runs == [], "a run is claimable when its lease ends by the store's clock"
    await backend.pass_time(SHORT)
    [recovered] = (await peer.claim_due("w2", now=T0, lease=LEASE, limit=10)).runs
    assert (recovered.id, recovered.attempt) == (run.id, 2)


async def test_paused_and_orphaned_tasks_are_not_claimed(store: Store) -> None:
    await store.add([task("paused", paused=True), task("orphaned", orphaned="no such job"), task("ok")])
    claim = await store.claim_due("w1", now=T0, lease=LEASE, limit=10)
    assert [t.id for t in claim.tasks] == ["ok"]
    await store.update("paused", paused=False)
    claim = await store.claim_due("w1", now=T0, lease=LEASE, limit=10)
    assert [t.id for t in claim.tasks] == ["paused"]


async def test_a_claim_respects_its_limit(backend: Backend, store: Store) -> None:
    await store.add([task(f"t{i}", at=T0 - i * SECOND) for i in range(5)])
    first = await store.claim_due("w1", now=T0, lease=LEASE, limit=2)
    second = await store.claim_due("w2", now=T0, lease=LEASE, limit=2)
    third = await store.claim_due("w3", now=T0, lease=LEASE, limit=2)
    claimed = [[t.id for t in claim.tasks] for claim in (first, second, third)]
    if backend.claims_in_due_order:
        assert claimed == [["t4", "t3"], ["t2", "t1"], ["t0"]]
    else:  # the earliest of each shard first, shards by turns
        assert [len(ids) for ids in claimed] == [2, 2, 1]
        assert sorted(task_id for ids in claimed for task_id in ids) == ["t0", "t1", "t2", "t3", "t4"]
    assert not await store.claim_due("w1", now=T0, lease=LEASE, limit=0)


async def test_a_claimed_task_carries_its_live_state(store: Store) -> None:
    await store.add([task("a", max_instances=2)])
    await start_run(store, "w1", then=T0 + MINUTE)
    claim = await store.claim_due("w1", now=T0 + MINUTE, lease=LEASE, limit=10)
    [claimed] = claim.tasks
    assert (claimed.next_run_time, claimed.running, claimed.version) == (T0 + MINUTE, 1, 0)


async def test_a_claimed_task_is_not_claimed_again_while_its_lease_lasts(store: Store, peer: Store) -> None:
    await store.add([task("a")])
    assert len((await store.claim_due("w1", now=T0, lease=LEASE, limit=10)).tasks) == 1
    assert not await peer.claim_due("w2", now=T0 + LEASE - SECOND, lease=LEASE, limit=10)
    assert not await store.claim_due("w1", now=T0 + LEASE - SECOND, lease=LEASE, limit=10)


async def test_an_expired_claim_goes_to_another_owner(backend: Backend, store: Store, peer: Store) -> None:
    await store.add([task("a")])
    [mine] = (await store.claim_due("w1", now=T0, lease=SHORT, limit=10)).tasks
    assert not await peer.claim_due("w2", now=T0, lease=LEASE, limit=10)
    # w1 died between claim_due and fire: after the lease, w2 takes the task over
    await backend.pass_time(SHORT)
    [theirs] = (await peer.claim_due("w2", now=T0, lease=LEASE, limit=10)).tasks
    assert theirs.id == "a" and theirs.next_run_time == T0
    assert await store.fire("w1", [decide(mine, then=T0 + MINUTE)], now=T0 + LEASE, lease=LEASE) == []
    [result] = await peer.fire("w2", [decide(theirs, then=T0 + MINUTE)], now=T0 + LEASE, lease=LEASE)
    assert [r.owner for r in result.runs] == ["w2"]


async def test_two_owners_claiming_at_once_never_share_a_task_or_a_run(store: Store, peer: Store) -> None:
    await store.add([task(f"t{i:03}", at=T0 - i * SECOND) for i in range(60)])
    await store.add([task(f"r{i:03}", at=None, max_instances=5) for i in range(20)])
    for i in range(20):
        await store.enqueue_run(f"r{i:03}", fire_time=T0, now=T0)
    a, b = await asyncio.gather(
        store.claim_due("w1", now=T0, lease=LEASE, limit=35),
        peer.claim_due("w2", now=T0, lease=LEASE, limit=35),
    )
    tasks = [t.id for t in a.tasks + b.tasks]
    runs = [r.id for r in a.runs + b.runs]
    assert len(tasks) == len(set(tasks)) and len(runs) == len(set(runs))
    assert len(a.tasks) + len(a.runs) == 35 and len(b.tasks) + len(b.runs) == 35
    assert {r.owner for r in a.runs} <= {"w1"} and {r.owner for r in b.runs} <= {"w2"}


async def test_concurrent_claims_from_many_owners_take_everything_exactly_once(
    store: Store, peer: Store
) -> None:
    await store.add([task(f"t{i:03}", at=T0) for i in range(200)])
    claims = await asyncio.gather(
        *(s.claim_due(f"w{i}", now=T0, lease=LEASE, limit=30) for i, s in enumerate([store, peer] * 5))
    )
    taken = [t.id for claim in claims for t in claim.tasks]
    assert sorted(taken) == sorted(f"t{i:03}" for i in range(200)) and len(taken) == 200


async def test_next_wakeup_is_the_earliest_of_next_run_times_claims_and_leases(
    backend: Backend, store: Store
) -> None:
    assert await store.next_wakeup(now=T0) is None
    await store.add([task("paused", at=T0, paused=True), task("later", at=T0 + MINUTE)])
    assert await store.next_wakeup(now=T0) == T0 + MINUTE
    await store.add([task("due", at=T0)])
    assert await store.next_wakeup(now=T0) == T0
    before = backend.store_time()
    await store.claim_due("w1", now=T0, lease=LEASE, limit=1)  # takes "due": its claim ends in LEASE
    # a claim's end by the store's clock, told in the caller's: LEASE from now (less the time spent)
    woken = await store.next_wakeup(now=T0)
    backend.assert_between(woken, T0 + LEASE - (backend.store_time() - before), T0 + LEASE)
    await store.add([task("one-shot", at=None, max_instances=2)])
    await store.enqueue_run("one-shot", fire_time=T0, now=T0 + SECOND)  # a waiting run, the caller's clock
    assert await store.next_wakeup(now=T0) == T0 + SECOND


async def test_next_wakeup_follows_a_run_lease(backend: Backend, store: Store) -> None:
    await store.add([task("a")])
    before = backend.store_time()
    [run] = await start_run(store, "w1")  # fired with no next run time: only the run is left
    after = backend.store_time()
    backend.assert_between(run.lease_until, before + LEASE, after + LEASE)
    woken = await store.next_wakeup(now=T0)
    backend.assert_between(
        woken, T0 + (run.lease_until - backend.store_time()), T0 + (run.lease_until - after)
    )
    await backend.pass_time(SHORT)
    before = backend.store_time()
    await store.extend("w1", held(run), lease=LEASE)
    [extended] = await store.list_runs()
    backend.assert_between(extended.lease_until, before + LEASE, backend.store_time() + LEASE)
    assert extended.lease_until >= run.lease_until + SHORT
    woken = await store.next_wakeup(now=T0 + MINUTE)
    backend.assert_between(woken, T0 + MINUTE + LEASE - (backend.store_time() - before), T0 + MINUTE + LEASE)


async def _next_wakeup_while(wakeups: Store, change: Callable[[int], Awaitable[object]]) -> None:
    """Wait (5 s at most) until ``wakeups`` yields, calling ``change(i)`` now and then (a
    listener may need a moment to subscribe)."""
    iterator = wakeups.wakeups()
    pending: asyncio.Future[None] = asyncio.ensure_future(anext(iterator))
    try:
        for i in range(100):
            await change(i)
            done, _ = await asyncio.wait([pending], timeout=0.05)
            if done:
                pending.result()  # a yield, not the end of the iteration
                return
        raise AssertionError("wakeups() did not yield within 5 s of a change")
    finally:
        pending.cancel()
        with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
            await pending
        close = getattr(iterator, "aclose", None)
        if close is not None:
            await close()


def _adding(store: Store, name: str) -> Callable[[int], Awaitable[object]]:
    """Adds of tasks through ``store``, each due before the last."""

    async def add(i: int) -> None:
        await store.add([task(f"{name}-{i}", at=T0 + MINUTE - i * timedelta(milliseconds=1))])

    return add


async def test_wakeups_yield_after_an_add_by_another_instance(store: Store, peer: Store) -> None:
    await _next_wakeup_while(wakeups=store, change=_adding(peer, "theirs"))


async def test_wakeups_yield_after_an_add_by_the_same_instance(store: Store) -> None:
    await _next_wakeup_while(wakeups=store, change=_adding(store, "mine"))


async def test_wakeups_yield_after_a_state_write_that_asks_for_it(store: Store, peer: Store) -> None:
    async def write(i: int) -> None:
        assert await peer.put_state("cancel", {"run": i}, version=i, wake=True)

    await _next_wakeup_while(wakeups=store, change=write)
