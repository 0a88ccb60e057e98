"""Contract: retries, deferred runs, dead letters and shared state documents."""

from __future__ import annotations

from datetime import datetime, timedelta

from backbeat.abc import Store
from backbeat.model.records import Run, RunOutcome, RunResult
from tests.contract.helpers import LEASE, MINUTE, T0, finished, start_run, task

SECOND = timedelta(seconds=1)


def failure(
    run: Run, *, at: datetime = T0, retry_at: datetime | None = None, dead_letter: bool = False
) -> RunResult:
    """A failed run with its error details."""
    return RunResult(
        run=run,
        outcome=RunOutcome.FAILURE,
        finished_at=at,
        error="ValueError: card declined",
        error_type="builtins.ValueError",
        traceback="Traceback (most recent call last):\n  ...\nValueError: card declined\n",
        retry_at=retry_at,
        dead_letter=dead_letter,
    )


async def test_a_retried_run_waits_until_its_time_with_the_next_attempt(store: Store) -> None:
    await store.add([task("pay", at=T0)])
    [run] = await start_run(store, "w1")
    assert await store.complete("w1", [failure(run, retry_at=T0 + 5 * SECOND)]) == set()
    [waiting] = await store.list_runs("pay")
    assert (waiting.id, waiting.attempt, waiting.owner, waiting.lease_until) == (
        run.id,
        2,
        None,
        T0 + 5 * SECOND,
    )
    stored = await store.get("pay")
    assert stored is not None and (stored.running, stored.failures, stored.last_outcome) == (1, 1, "failure")
    assert not (await store.claim_due("w2", now=T0 + 4 * SECOND, lease=LEASE, limit=10)).runs
    [again] = (await store.claim_due("w2", now=T0 + 5 * SECOND, lease=LEASE, limit=10)).runs
    assert (again.id, again.attempt, again.owner, again.recovered) == (run.id, 2, "w2", False)


async def test_a_deferred_run_keeps_its_attempt_and_counts_nothing(store: Store) -> None:
    await store.add([task("pay", at=T0)])
    [run] = await start_run(store, "w1")
    deferred = RunResult(run=run, outcome=RunOutcome.DEFERRED, finished_at=T0, retry_at=T0 + MINUTE)
    assert await store.complete("w1", [deferred]) == set()
    [waiting] = await store.list_runs("pay")
    assert (waiting.attempt, waiting.owner, waiting.lease_until) == (1, None, T0 + MINUTE)
    stored = await store.get("pay")
    assert stored is not None
    assert (stored.running, stored.runs, stored.failures, stored.last_outcome) == (1, 0, 0, None)
    [again] = (await store.claim_due("w2", now=T0 + MINUTE, lease=LEASE, limit=10)).runs
    assert (again.id, again.attempt) == (run.id, 1)


async def test_the_last_failure_is_kept_as_a_dead_letter_with_the_task(store: Store, peer: Store) -> None:
    await store.add([task("once", at=T0, tags=["order:7"], kwargs={"order": 7})])
    [run] = await start_run(store, "w1", then=None)
    await store.complete("w1", [failure(run, at=T0 + SECOND, dead_letter=True)])
    assert await store.get("once") is None, "a one-shot task leaves the store after its last run"
    assert await store.list_runs() == []
    [letter] = await peer.dead_letters()
    assert (letter.id, letter.task_id, letter.fire_time, letter.attempt) == (run.id, "once", T0, 1)
    assert (letter.failed_at, letter.error, letter.error_type) == (
        T0 + SECOND,
        "ValueError: card declined",
        "builtins.ValueError",
    )
    assert letter.traceback is not None and "card declined" in letter.traceback
    assert letter.task is not None and (letter.task.tags, letter.task.kwargs) == (("order:7",), {"order": 7})
    assert [d.id for d in await peer.dead_letters("once")] == [run.id]
    assert await peer.dead_letters("other") == []


async def test_dead_letters_are_listed_oldest_first_and_outlive_their_task(store: Store) -> None:
    await store.add([task("a", at=T0), task("b", at=T0)])
    runs = {r.task_id: r for r in await start_run(store, "w1", then=T0 + MINUTE)}
    await store.complete("w1", [failure(runs["b"], at=T0 + SECOND, dead_letter=True)])
    await store.complete("w1", [failure(runs["a"], at=T0 + 2 * SECOND, dead_letter=True)])
    assert await store.remove(["a", "b"]) == ["a", "b"]
    assert [d.task_id for d in await store.dead_letters()] == ["b", "a"]


async def test_a_dead_letter_is_removed_by_id(store: Store) -> None:
    await store.add([task("a", at=T0)])
    [run] = await start_run(store, "w1", then=T0 + MINUTE)
    await store.complete("w1", [failure(run, dead_letter=True)])
    assert await store.remove_dead_letters([run.id, "nope"]) == [run.id]
    assert await store.dead_letters() == []
    assert await store.remove_dead_letters([run.id]) == []


async def test_requeuing_a_dead_letter_of_a_removed_one_shot_brings_its_task_back(
    store: Store, peer: Store
) -> None:
    await store.add([task("once", at=T0, kwargs={"order": 7})])
    [run] = await start_run(store, "w1", then=None)
    await store.complete("w1", [failure(run, dead_letter=True)])
    requeued = await peer.requeue_dead_letter(run.id, now=T0 + MINUTE)
    assert requeued is not None
    assert (requeued.id, requeued.fire_time, requeued.attempt, requeued.owner) == (run.id, T0, 1, None)
    assert await store.dead_letters() == []
    back = await store.get("once")
    assert back is not None and (back.kwargs, back.next_run_time, back.running) == ({"order": 7}, None, 1)
    [claimed] = (await store.claim_due("w2", now=T0 + MINUTE, lease=LEASE, limit=10)).runs
    assert (claimed.id, claimed.attempt) == (run.id, 1)
    assert claimed.task is not None and claimed.task.id == "once"
    await store.complete("w2", [finished(claimed)])
    assert await store.get("once") is None, "the re-added one-shot leaves again once its run completed"


async def test_requeuing_a_dead_letter_of_a_living_task_adds_a_run(store: Store) -> None:
    await store.add([task("every", at=T0)])
    [run] = await start_run(store, "w1", then=T0 + MINUTE)
    await store.complete("w1", [failure(run, dead_letter=True)])
    assert await store.requeue_dead_letter(run.id, now=T0 + SECOND) is not None
    stored = await store.get("every")
    assert stored is not None and (stored.running, stored.next_run_time) == (1, T0 + MINUTE)
    assert await store.requeue_dead_letter(run.id, now=T0 + SECOND) is None, "it is no longer a dead letter"


async def test_requeuing_respects_max_instances_and_keeps_the_letter(store: Store) -> None:
    await store.add([task("every", at=T0, max_instances=1)])
    [run] = await start_run(store, "w1", then=T0 + MINUTE)
    await store.complete("w1", [failure(run, dead_letter=True)])
    [busy] = await start_run(store, "w1", now=T0 + MINUTE, then=T0 + 2 * MINUTE)
    assert await store.requeue_dead_letter(run.id, now=T0 + MINUTE) is None
    assert [d.id for d in await store.dead_letters()] == [run.id]
    await store.complete("w1", [finished(busy)])
    assert await store.requeue_dead_letter(run.id, now=T0 + MINUTE) is not None


async def test_requeuing_an_unknown_dead_letter_changes_nothing(store: Store) -> None:
    assert await store.requeue_dead_letter("nope@2024", now=T0) is None
    assert await store.list_runs() == []


async def test_state_documents_are_compare_and_set(store: Store, peer: Store) -> None:
    assert await store.get_state("breaker:pay") is None
    assert await store.put_state("breaker:pay", {"state": "closed", "failures": 1}, version=1) is False
    assert await store.put_state("breaker:pay", {"state": "closed", "failures": 1}, version=0) is True
    record = await peer.get_state("breaker:pay")
    assert record is not None and (record.value, record.version) == ({"state": "closed", "failures": 1}, 1)
    assert await peer.put_state("breaker:pay", {"state": "open", "opened_at": 12.5}, version=1) is True
    assert await store.put_state("breaker:pay", {"state": "closed", "failures": 2}, version=1) is False
    record = await store.get_state("breaker:pay")
    assert record is not None and (record.value, record.version) == ({"state": "open", "opened_at": 12.5}, 2)
    assert await store.get_state("breaker:other") is None


async def test_clear_removes_dead_letters_and_state(store: Store) -> None:
    await store.add([task("a", at=T0)])
    [run] = await start_run(store, "w1", then=None)
    await store.complete("w1", [failure(run, dead_letter=True)])
    await store.put_state("breaker:x", {"state": "open"}, version=0)
    await store.clear()
    assert await store.dead_letters() == []
    assert await store.get_state("breaker:x") is None
