"""Fencing tokens: every lease of a fire time carries a greater token, and the store refuses an
older holder's completion, renewal, retry and release, even when it has the same owner name."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from backbeat.abc import Store
from backbeat.model.records import Run, RunOutcome
from tests.contract.helpers import LEASE, SHORT, T0, finished, held, start_run, task
from tests.contract.stores import Backend

SECOND = timedelta(seconds=1)


async def _retaken(backend: Backend, store: Store, owner: str) -> tuple[Run, Run]:
    """Fire a run of "a" for A with a SHORT lease, let it end, and claim it again for
    ``owner``: (the first lease's run, the second's)."""
    await store.add([task("a")])
    [first] = await start_run(store, "A", lease=SHORT)
    await backend.pass_time(SHORT)
    [second] = (await store.claim_due(owner, now=T0, lease=LEASE, limit=10)).runs
    return first, second


async def test_every_lease_of_a_fire_time_carries_a_greater_token(backend: Backend, store: Store) -> None:
    await store.add([task("a")])
    [fired] = await start_run(store, "A", lease=SHORT)
    tokens = [fired.fencing_token]
    assert tokens[0] > 0
    await backend.pass_time(SHORT)
    [taken] = (await store.claim_due("B", now=T0, lease=LEASE, limit=10)).runs  # a takeover
    tokens.append(taken.fencing_token)
    await store.release("B", leases=held(taken), task_ids=(), now=T0)
    [released] = await store.list_runs()
    assert (released.owner, released.fencing_token) == (None, taken.fencing_token)  # kept while waiting
    [claimed] = (await store.claim_due("C", now=T0, lease=LEASE, limit=10)).runs
    tokens.append(claimed.fencing_token)
    await store.complete("C", [finished(claimed, RunOutcome.FAILURE, retry_at=T0 + SECOND)])
    [retried] = (await store.claim_due("A", now=T0 + SECOND, lease=LEASE, limit=10)).runs
    tokens.append(retried.fencing_token)
    assert tokens == sorted(set(tokens)), tokens
    [listed] = await store.list_runs()
    assert (listed.owner, listed.fencing_token) == ("A", retried.fencing_token)


async def test_an_older_token_of_the_same_owner_is_refused(backend: Backend, store: Store) -> None:
    # A paused past its lease and claimed its own run again: the old execution is fenced out
    first, second = await _retaken(backend, store, "A")
    assert (second.owner, second.recovered) == ("A", True)
    assert second.fencing_token > first.fencing_token

    assert await store.extend("A", held(first), lease=LEASE) == set()
    retry = finished(first, RunOutcome.FAILURE, retry_at=T0 + SECOND)
    assert await store.complete("A", [retry]) == {first.id}
    assert await store.complete("A", [finished(first)]) == {first.id}
    await store.release("A", leases=held(first), task_ids=(), now=T0)
    [run] = await store.list_runs()
    assert (run.owner, run.attempt, run.fencing_token) == ("A", 2, second.fencing_token)  # untouched

    assert await store.extend("A", held(second), lease=LEASE) == {second.id}
    assert await store.complete("A", [finished(second)]) == set()
    assert await store.list_runs() == []


async def test_a_token_is_checked_per_run(backend: Backend, store: Store) -> None:
    await store.add([task("a"), task("b")])
    a, b = await start_run(store, "A")
    assert a.fencing_token != b.fencing_token
    swapped = {a.id: b.fencing_token, b.id: a.fencing_token}
    assert await store.extend("A", swapped, lease=LEASE) == set()
    assert await store.complete("A", [finished(replace(a, fencing_token=b.fencing_token))]) == {a.id}
    assert await store.extend("A", held(a, b), lease=LEASE) == {a.id, b.id}


async def test_tokens_never_go_back_not_even_after_clear(backend: Backend, store: Store, peer: Store) -> None:
    first, second = await _retaken(backend, store, "B")
    await store.clear()
    await peer.add([task("a")])
    [again] = await start_run(peer, "C")
    assert again.id == first.id
    assert again.fencing_token > second.fencing_token > first.fencing_token
    # the holder from before the clear cannot touch the run of the same fire time made after it
    assert await store.complete("B", [finished(second)]) == {second.id}
    assert await peer.complete("C", [finished(again)]) == set()


async def test_a_completion_sent_again_finds_a_re_queued_run_completed_and_a_deleted_one_lost(
    store: Store,
) -> None:
    # the first sending went through but its reply was lost: the resend changes nothing; a run
    # waiting under the result's token was re-queued by it (not lost), a run gone is reported,
    # as the store cannot tell it from one a takeover completed (the engine, still holding its
    # lease, can: see Completions)
    await store.add([task("done"), task("retried")])
    done, retried = sorted(await start_run(store, "A"), key=lambda run: run.task_id)
    results = [finished(done), finished(retried, RunOutcome.FAILURE, retry_at=T0 + SECOND)]
    assert await store.complete("A", results) == set()
    [waiting] = await store.list_runs()
    assert await store.complete("A", results) == {done.id}
    assert await store.list_runs() == [waiting]
    stored = await store.get("retried")
    assert stored is not None and (stored.runs, stored.failures) == (1, 1)  # counted once

    # once the retry is claimed (a new token), its holder's completion sent again is a loss
    [again] = (await store.claim_due("B", now=T0 + SECOND, lease=LEASE, limit=10)).runs
    assert await store.complete("A", results) == {done.id, retried.id}
    assert await store.complete("B", [finished(again)]) == set()


async def test_a_late_finisher_whose_run_a_takeover_completed_learns_it_was_lost(
    backend: Backend, store: Store, peer: Store
) -> None:
    # A paused past its lease; B took the run over, ran and completed it: A's run was a second
    # execution of the fire time, which A must report (a warning, its own history entry)
    first, second = await _retaken(backend, store, "B")
    assert await peer.complete("B", [finished(second)]) == set()
    assert await store.list_runs() == []
    assert await store.complete("A", [finished(first)]) == {first.id}
