"""Contract: a completion with history on records each completed run's entry in the same call."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest

from backbeat.abc import Store
from backbeat.model.history import (
    EPOCH,
    HistoryEntry,
    HistoryOutcome,
    HistoryQuery,
    HistorySettings,
    entry_id,
)
from backbeat.model.records import Run, RunOutcome, RunResult
from tests.contract.helpers import T0, finished, start_run, task

SECOND = timedelta(seconds=1)
OWNER = "host-a:4242:abcd1234"
ON = HistorySettings()


async def started(store: Store, *task_ids: str, args: list[object] | None = None) -> list[Run]:
    """Runs of new tasks, leased to ``OWNER``, carrying their task (as the engine's do)."""
    tasks = {i: task(i, args=args or []) for i in task_ids}
    await store.add(list(tasks.values()))
    runs = await start_run(store, OWNER)
    for run in runs:
        run.task = tasks[run.task_id]
    return sorted(runs, key=lambda run: run.task_id)


async def history(store: Store) -> list[HistoryEntry]:
    entries, _ = await store.run_history(HistoryQuery(limit=100))
    return sorted(entries, key=lambda entry: entry.task_id)


async def test_a_completed_run_leaves_its_entry_with_every_field(store: Store) -> None:
    [ok, failed] = await started(store, "ok", "retried")
    results = [
        RunResult(run=ok, outcome=RunOutcome.SUCCESS, finished_at=T0 + 3 * SECOND, started_at=T0 + SECOND),
        RunResult(
            run=failed,
            outcome=RunOutcome.FAILURE,
            finished_at=T0 + 2 * SECOND,
            started_at=T0,
            error='ValueError: card "declined"\n é \u0000 ' + "x" * 30,
            error_type="builtins.ValueError",
            retry_at=T0 + 10 * SECOND,
        ),
    ]

    settings = HistorySettings(message_limit=24)
    assert await store.complete(OWNER, results, history=settings) == set()

    [ok_entry, failed_entry] = await history(store)
    assert ok_entry == HistoryEntry(
        id=entry_id(ok.id, 1, HistoryOutcome.SUCCESS, ok.fencing_token),
        task_id="ok",
        task_name="name-ok",
        run_id=ok.id,
        fire_time=ok.fire_time,
        started_at=T0 + SECOND,
        ended_at=T0 + 3 * SECOND,
        outcome=HistoryOutcome.SUCCESS,
        owner=OWNER,
    )
    assert (ok_entry.duration, ok_entry.host, ok_entry.pid) == (2.0, "host-a", 4242)
    assert failed_entry.id == entry_id(failed.id, 1, HistoryOutcome.RETRY_SCHEDULED, failed.fencing_token)
    assert (failed_entry.outcome, failed_entry.error_type, failed_entry.error) == (
        HistoryOutcome.RETRY_SCHEDULED,
        "builtins.ValueError",
        'card "declined"\n é \u0000 xx…',
    )
    assert [r.id for r in await store.list_runs()] == [failed.id]  # re-queued, as without history


async def test_a_later_attempt_and_a_dead_letter_are_recorded_as_such(store: Store) -> None:
    [run] = await started(store, "pay")
    retry = RunResult(run=run, outcome=RunOutcome.FAILURE, finished_at=T0, error="boom", retry_at=T0 + SECOND)
    await store.complete(OWNER, [retry], history=ON)
    claim = await store.claim_due("w2", now=T0 + 2 * SECOND, lease=timedelta(seconds=10), limit=10)
    [again] = claim.runs
    dead = RunResult(
        run=again, outcome=RunOutcome.FAILURE, finished_at=T0 + 3 * SECOND, error="boom", dead_letter=True
    )

    assert await store.complete("w2", [dead], history=ON) == set()

    entries, _ = await store.run_history(HistoryQuery(task_id="pay"))
    assert [(e.outcome, e.attempt, e.owner, e.started_at) for e in entries] == [
        (HistoryOutcome.DEAD_LETTERED, 2, "w2", None),
        (HistoryOutcome.RETRY_SCHEDULED, 1, OWNER, None),
    ]
    assert entries[0].id == entry_id(again.id, 2, HistoryOutcome.DEAD_LETTERED, again.fencing_token)
    assert entries[0].task_name == "name-pay"  # from the task snapshot the claim carries


async def test_arguments_are_recorded_only_when_asked_for(store: Store) -> None:
    [plain, with_args] = await started(store, "a", "b", args=[1, "two"])

    await store.complete(OWNER, [finished(plain)], history=ON)
    await store.complete(
        OWNER, [finished(with_args, at=T0 + SECOND)], history=HistorySettings(record_args=True)
    )

    [a, b] = await history(store)
    assert a.args is None
    assert b.args == {"args": [1, "two"], "kwargs": {}, "data": None}


async def test_history_off_records_nothing(store: Store) -> None:
    runs = await started(store, "a", "b")

    assert await store.complete(OWNER, [finished(runs[0])]) == set()
    assert await store.complete(OWNER, [finished(runs[1])], history=None) == set()

    assert await history(store) == []
    assert await store.list_runs() == []


async def test_a_completion_sent_again_records_each_entry_once(store: Store, peer: Store) -> None:
    runs = await started(store, "a", "b")
    results = [finished(run, at=T0 + SECOND) for run in runs]

    assert await store.complete(OWNER, results, history=ON) == set()
    # its reply lost, sent again (by another connection): nothing is held any more, and the runs
    # gone are reported (the engine, still holding their leases, knows them for its own)
    assert await peer.complete(OWNER, results, history=ON) == {run.id for run in runs}

    assert [e.id for e in await history(store)] == [
        entry_id(run.id, 1, HistoryOutcome.SUCCESS, run.fencing_token) for run in runs
    ]


async def test_a_run_not_held_and_a_deferred_run_record_nothing(store: Store) -> None:
    [held, deferred] = await started(store, "held", "later")
    results = [
        RunResult(run=deferred, outcome=RunOutcome.DEFERRED, finished_at=T0, retry_at=T0 + SECOND),
        finished(held),
    ]

    assert await store.complete("someone-else", results, history=ON) == {held.id, deferred.id}
    assert await store.complete(OWNER, results, history=ON) == set()

    assert [e.task_id for e in await history(store)] == ["held"]


async def test_an_entry_that_cannot_be_built_does_not_hold_up_its_completion(store: Store) -> None:
    [bad, good] = await started(store, "bad", "good")
    unencodable = RunResult(
        run=bad,
        outcome=RunOutcome.FAILURE,
        finished_at=T0,
        error="ValueError: half a pair \ud800",
        error_type="builtins.ValueError",
    )

    assert await store.complete(OWNER, [unencodable, finished(good)], history=ON) == set()

    assert await store.list_runs() == []  # both completed
    assert [e.task_id for e in await history(store)] == ["good"]


async def test_each_entry_of_a_batch_is_its_own_runs_around_runs_without_one(store: Store) -> None:
    # Redis sends a batch's items in one argument, split by newlines: names and messages that
    # hold newlines, and runs with no item among them, must leave every entry with its own run
    runs = await started(store, "a", "b", "c", "d", "e")
    for run in runs:
        assert run.task is not None
        run.task.name = f"name of\n{run.task_id}\n"
    a, b, c, d, e = runs
    results = [
        RunResult(run=a, outcome=RunOutcome.DEFERRED, finished_at=T0, retry_at=T0 + SECOND),
        RunResult(
            run=b,
            outcome=RunOutcome.FAILURE,
            finished_at=T0,
            error="ValueError: b\nsecond line",
            error_type="V",
        ),
        RunResult(run=c, outcome=RunOutcome.FAILURE, finished_at=T0, error="half a pair \ud800"),
        finished(d),
        RunResult(run=e, outcome=RunOutcome.FAILURE, finished_at=T0, error="e\n"),
    ]

    assert await store.complete(OWNER, results, history=ON) == set()

    assert [(x.task_id, x.task_name, x.error) for x in await history(store)] == [
        ("b", "name of\nb\n", "ValueError: b\nsecond line"),
        ("d", "name of\nd\n", None),
        ("e", "name of\ne\n", "e\n"),
    ]


async def test_a_lost_run_in_a_batch_leaves_the_others_their_own_entries(store: Store) -> None:
    # Redis passes a batch's entries on as the client built them unless a run was lost or has
    # no entry: then it must pick the entries of the runs it completed, each with its own fields
    a, b, c, d, e = await started(store, "a", "b", "c", "d", "e")
    assert await store.complete(OWNER, [finished(b, at=T0)], history=ON) == set()
    assert await store.complete(OWNER, [finished(e, at=T0)], history=ON) == set()
    every_entry = [finished(a, at=T0 + SECOND), finished(b, at=T0 + 2 * SECOND)]
    some_without = [
        finished(c, RunOutcome.DEFERRED, at=T0 + 3 * SECOND, retry_at=T0 + 9 * SECOND),
        finished(e, at=T0 + 4 * SECOND),
        finished(d, RunOutcome.CANCELLED, at=T0 + 5 * SECOND),
    ]

    assert await store.complete(OWNER, every_entry, history=ON) == {b.id}
    assert await store.complete(OWNER, some_without, history=ON) == {e.id}

    assert [(x.task_id, x.ended_at, x.outcome) for x in await history(store)] == [
        ("a", T0 + SECOND, HistoryOutcome.SUCCESS),
        ("b", T0, HistoryOutcome.SUCCESS),
        ("d", T0 + 5 * SECOND, HistoryOutcome.CANCELLED),
        ("e", T0, HistoryOutcome.SUCCESS),
    ]


async def test_a_completion_of_hundreds_of_runs_records_each_entry_once(store: Store) -> None:
    # Redis writes a completion's entries a hundred at a time: 250 runs, deferred ones among
    # them (no entry), leave each of their entries, across the chunks' edges
    tasks = {f"t{i:03d}": task(f"t{i:03d}") for i in range(250)}
    await store.add(list(tasks.values()))
    runs: list[Run] = []
    while len(runs) < len(tasks):
        more = await start_run(store, OWNER)
        assert more
        runs += more
    results = []
    for i, run in enumerate(sorted(runs, key=lambda run: run.task_id)):
        run.task = tasks[run.task_id]
        if i % 7 == 3:
            results.append(
                RunResult(run=run, outcome=RunOutcome.DEFERRED, finished_at=T0, retry_at=T0 + SECOND)
            )
        else:
            results.append(
                RunResult(run=run, outcome=RunOutcome.SUCCESS, finished_at=T0 + SECOND, started_at=T0)
            )

    assert await store.complete(OWNER, results, history=ON) == set()

    entries, cursor = await store.run_history(HistoryQuery(limit=300))
    assert cursor is None
    recorded = [r.run.task_id for r in results if r.outcome is RunOutcome.SUCCESS]
    assert sorted(entry.task_id for entry in entries) == recorded
    assert {(entry.fire_time, entry.started_at, entry.ended_at) for entry in entries} == {
        (T0, T0, T0 + SECOND)
    }


@pytest.mark.parametrize("outcome", [RunOutcome.SUCCESS, RunOutcome.FAILURE])
async def test_a_run_that_ended_before_1970_completes_without_an_entry(
    store: Store, outcome: RunOutcome, caplog: pytest.LogCaptureFixture
) -> None:
    # only with an injected clock, or a system clock set wrong: the run completes, its entry
    # alone is left out (logged), and the entries beside it are kept
    runs = await started(store, "a", "b", "c")
    ends = {"a": T0, "b": EPOCH - SECOND, "c": T0 + SECOND}
    results = [
        RunResult(
            run=run,
            outcome=outcome,
            finished_at=ends[run.task_id],
            started_at=ends[run.task_id] - SECOND,
            error=None if outcome is RunOutcome.SUCCESS else "boom",
        )
        for run in runs
    ]

    with caplog.at_level(logging.WARNING, logger="backbeat.history"):
        assert await store.complete(OWNER, results, history=ON) == set()

    assert [x.task_id for x in await history(store)] == ["a", "c"]
    assert await store.list_runs() == []
    [warning] = [r for r in caplog.records if r.name == "backbeat.history"]
    assert "b@" in warning.getMessage() and "before 1970" in warning.getMessage()
