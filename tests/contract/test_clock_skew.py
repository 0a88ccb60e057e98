"""Contract: leases end by the store's clock, whatever clock the callers' ``now`` comes from.

Owner A claims and fires with its ``now``; owner B's clock is leases ahead of A's (or
behind). B must neither take A's live claims and runs, nor miss them once they ended.
"""

from __future__ import annotations

from datetime import timedelta

from backbeat.abc import Store
from tests.contract.helpers import LEASE, MINUTE, SHORT, T0, decide, finished, task
from tests.contract.stores import Backend

RENEWED = 4 * SHORT
"""The lease of the test that renews a run between two waits: each wait has to end well inside
it, on a loaded machine too (with SHORT the margin was about a tenth of a second)."""


async def _claim_and_fire_one(store: Store, lease: timedelta = SHORT) -> tuple[str, int]:
    """A claims "claimed" and "running" at T0 for ``lease`` and fires "running" only; its run
    id and fencing token."""
    await store.add([task("claimed", at=T0), task("running", at=T0)])
    claim = await store.claim_due("A", now=T0, lease=lease, limit=10)
    assert sorted(t.id for t in claim.tasks) == ["claimed", "running"]
    [running] = [t for t in claim.tasks if t.id == "running"]
    [result] = await store.fire("A", [decide(running, then=None)], now=T0, lease=lease)
    [run] = result.runs
    return run.id, run.fencing_token


async def test_an_owner_whose_clock_runs_ahead_takes_no_live_claim_or_lease(
    backend: Backend, store: Store, peer: Store
) -> None:
    run_id, token = await _claim_and_fire_one(store, RENEWED)
    for ahead in (2 * RENEWED, 1000 * RENEWED, timedelta(days=30)):
        stolen = await peer.claim_due("B", now=T0 + ahead, lease=LEASE, limit=10, horizon=T0 + ahead)
        assert (stolen.tasks, stolen.runs) == ([], []), f"B {ahead} ahead took a live lease"

    # A renews its run; its claim of "claimed" (never fired) runs out
    await backend.pass_time(RENEWED * 0.6)
    assert await store.extend("A", {run_id: token}, now=T0, lease=RENEWED) == {run_id}
    await backend.pass_time(RENEWED * 0.6)
    taken = await peer.claim_due("B", now=T0 + 2 * RENEWED, lease=LEASE, limit=10)
    assert ([t.id for t in taken.tasks], taken.runs) == (["claimed"], []), "B took a renewed run"

    # A stops renewing: once its lease ends by the store's clock, B takes the run over
    await backend.pass_time(RENEWED)
    [recovered] = (await peer.claim_due("B", now=T0 + 1000 * RENEWED, lease=LEASE, limit=10)).runs
    assert (recovered.id, recovered.owner, recovered.attempt, recovered.recovered) == (run_id, "B", 2, True)
    assert await store.extend("A", {run_id: token}, now=T0, lease=RENEWED) == set()
    assert await store.complete("A", [finished(recovered)]) == {run_id}
    assert await peer.complete("B", [finished(recovered)]) == set()


async def test_an_owner_whose_clock_runs_behind_sees_an_ended_lease_as_ended(
    backend: Backend, store: Store, peer: Store
) -> None:
    run_id, _ = await _claim_and_fire_one(store)
    await backend.pass_time(SHORT)
    behind = T0 - 1000 * SHORT
    claim = await peer.claim_due("B", now=behind, lease=LEASE, limit=10)
    assert [(r.id, r.owner, r.attempt, r.recovered) for r in claim.runs] == [(run_id, "B", 2, True)]
    # the claim of "claimed" ended too, but the task is not due by B's clock: due is the caller's
    assert claim.tasks == []
    [late] = (await peer.claim_due("B", now=T0, lease=LEASE, limit=10)).tasks
    assert late.id == "claimed"


async def test_schedules_and_waiting_runs_keep_the_callers_clock(backend: Backend, store: Store) -> None:
    """The store's clock (for a server, the real time; for the fakes, far from T0) decides no
    due time: a task is due, and a waiting run claimable, by the ``now`` the caller passes."""
    await store.add([task("later", at=T0 + MINUTE), task("manual", at=None)])
    assert await store.enqueue_run("manual", fire_time=T0, now=T0 + MINUTE) is not None
    assert not await store.claim_due("w1", now=T0 + MINUTE - timedelta(microseconds=1), lease=LEASE, limit=10)
    claim = await store.claim_due("w1", now=T0 + MINUTE, lease=LEASE, limit=10)
    assert ([t.id for t in claim.tasks], [r.task_id for r in claim.runs]) == (["later"], ["manual"])
