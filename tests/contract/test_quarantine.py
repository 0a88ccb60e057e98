"""Contract: a record that cannot be decoded is quarantined, reported and kept, never deleted."""

from __future__ import annotations

from datetime import timedelta

from backbeat.abc import Store
from backbeat.model.records import RunOutcome, TaskFilter
from backbeat.stores.memory import MemoryStore
from tests.contract.helpers import LEASE, SHORT, T0, finished, start_run, task
from tests.contract.stores import Backend

BAD = "{not json"
SECOND = timedelta(seconds=1)


async def test_a_corrupt_record_is_left_out_of_claims_and_kept(store: Store, backend: Backend) -> None:
    await store.add([task("bad"), task("good")])
    await backend.corrupt("bad", BAD)
    before = backend.store_time()
    claim = await store.claim_due("w1", now=T0, lease=SHORT, limit=10)
    assert [t.id for t in claim.tasks] == ["good"]
    [record] = await store.quarantined()
    assert (record.key, record.raw) == ("bad", BAD) and record.error
    assert await backend.raw("bad") == BAD
    # the good task's claim ends SHORT after the claim; nothing of "bad" is due any more
    woken = await store.next_wakeup(now=T0)
    backend.assert_between(woken, T0 + SHORT - (backend.store_time() - before), T0 + SHORT)
    await backend.pass_time(SHORT)
    later = await store.claim_due("w2", now=T0, lease=LEASE, limit=10)
    assert [t.id for t in later.tasks] == ["good"]
    assert await store.get("bad") is None
    assert [t.id for t in (await store.list())[0]] == ["good"]
    assert await backend.raw("bad") == BAD, "a quarantined record is never deleted"


async def test_a_corrupt_record_met_by_a_listing_is_quarantined(store: Store, backend: Backend) -> None:
    await store.add([task(f"t{i}", tags=("x",)) for i in range(5)])
    await backend.corrupt("t1", BAD)
    await backend.corrupt("t2", '{"id": "t2"}')  # JSON, but not a task
    page, cursor = await store.list(TaskFilter(tag="x"), limit=2)
    assert [t.id for t in page] == ["t0", "t3"] and cursor == "t3"
    assert [q.key for q in await store.quarantined()] == ["t1", "t2"]
    assert await store.get("t1") is None
    claim = await store.claim_due("w1", now=T0, lease=LEASE, limit=10)
    assert sorted(t.id for t in claim.tasks) == ["t0", "t3", "t4"]
    assert await backend.raw("t2") == '{"id": "t2"}'


async def test_get_quarantines_a_corrupt_record(store: Store, backend: Backend) -> None:
    await store.add([task("bad")])
    await backend.corrupt("bad", BAD)
    assert await store.get("bad") is None
    assert [q.key for q in await store.quarantined()] == ["bad"]


async def test_clear_removes_quarantined_records_too(store: Store, backend: Backend) -> None:
    await store.add([task("bad")])
    await backend.corrupt("bad", BAD)
    assert not await store.claim_due("w1", now=T0, lease=LEASE, limit=10)
    await store.clear()
    assert await store.quarantined() == []
    assert await backend.raw("bad") is None


async def test_a_task_quarantined_for_refused_completions_is_kept_out_of_claims_and_its_run_stays(
    store: Store, backend: Backend, peer: Store
) -> None:
    # the engine's call when the store refuses every completion of a run of the task
    await store.add([task("bad"), task("good")])
    runs = await start_run(store, "w1", then=T0 + SECOND, lease=SHORT)
    [bad] = [run for run in runs if run.task_id == "bad"]
    if isinstance(store, MemoryStore):
        assert not await store.quarantine("bad", "refused")  # nothing is ever unreadable there
        return
    assert await store.quarantine("bad", "refused: no result completes it")
    assert not await store.quarantine("nope", "never stored")

    [record] = await peer.quarantined()
    assert (record.key, record.error) == ("bad", "refused: no result completes it")
    assert "name-bad" in (await backend.raw("bad") or ""), "kept, never deleted"
    assert await peer.get("bad") is None
    assert [t.id for t in (await peer.list())[0]] == ["good"]
    claim = await peer.claim_due("w2", now=T0 + 2 * SECOND, lease=LEASE, limit=10)
    assert [t.id for t in claim.tasks] == ["good"]
    # its run stays, and is taken over with no task once its lease ended
    await backend.pass_time(SHORT)
    claim = await peer.claim_due("w2", now=T0 + 2 * SECOND, lease=LEASE, limit=10)
    assert [(run.id, run.task) for run in claim.runs if run.task_id == "bad"] == [(bad.id, None)]


async def test_completing_a_run_of_a_quarantined_task_keeps_its_record_as_it_was(
    store: Store, backend: Backend
) -> None:
    # its taker keeps the run (deferred) until the record is repaired; a run that was going
    # when the record went bad ends: neither writes anything into the record
    await store.add([task("bad")])
    [run] = await start_run(store, "w1")
    await backend.corrupt("bad", BAD)
    assert await store.get("bad") is None
    deferred = finished(run, RunOutcome.DEFERRED, retry_at=T0 + SECOND)
    assert await store.complete("w1", [deferred]) == set()
    assert await backend.raw("bad") == BAD
    [again] = (await store.claim_due("w2", now=T0 + SECOND, lease=LEASE, limit=10)).runs
    assert (again.id, again.task) == (run.id, None)
    assert await store.complete("w2", [finished(again)]) == set()
    assert await backend.raw("bad") == BAD
    assert [record.key for record in await store.quarantined()] == ["bad"]
