"""Contract: the entry a completion records equals the one ``record_history`` stores for the
same run (the recorder's path: lost replies, other history stores), for every field."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from backbeat.abc import Store
from backbeat.engine.history import HistoryRecorder
from backbeat.model.history import HistoryEntry, HistoryOutcome, HistoryQuery, HistorySettings
from backbeat.model.records import Run, RunOutcome, RunResult
from tests.contract.helpers import T0, start_run, task

SECOND = timedelta(seconds=1)
OWNER = 'host-"é":4242:ab\\cd'
ODD_ID = 'odd |"id"\\ é\n\u2028#x@y'
ODD_NAME = 'name "quoted" \\ \n\t é ✓ \u2028'


@pytest.mark.parametrize("record_args", [False, True])
@pytest.mark.parametrize(
    ("outcome", "error", "error_type", "retry", "dead"),
    [
        (RunOutcome.SUCCESS, None, None, False, False),
        (RunOutcome.FAILURE, 'ValueError: a "quote"\nline é ✓ \u0000', "builtins.ValueError", False, False),
        (RunOutcome.FAILURE, "boom", None, True, False),
        (RunOutcome.FAILURE, "KeyError: 'k'", "builtins.KeyError", False, True),
        (RunOutcome.CANCELLED, "its task was removed", None, False, False),
        (RunOutcome.LOST, None, "x.Lost", False, False),
    ],
)
async def test_a_completions_entry_equals_the_recorded_one(
    store: Store,
    peer: Store,
    outcome: RunOutcome,
    error: str | None,
    error_type: str | None,
    retry: bool,
    dead: bool,
    record_args: bool,
) -> None:
    settings = HistorySettings(record_args=record_args, message_limit=12)
    t = task(ODD_ID, name=ODD_NAME, args=[1, "two ✓", {"k": 'v"'}], kwargs={"é": None})
    await store.add([t])
    [run] = await start_run(store, OWNER)
    run.task = t
    result = RunResult(
        run=run,
        outcome=outcome,
        finished_at=T0 + 2 * SECOND,
        started_at=T0 + SECOND,
        error=error,
        error_type=error_type,
        retry_at=T0 + 9 * SECOND if retry else None,
        dead_letter=dead,
    )
    recorder = HistoryRecorder(peer, settings, owner=OWNER, clock=lambda: T0, by_completions=False)
    recorder.completed([result], set())
    [expected] = recorder._pending

    assert await store.complete(OWNER, [result], history=settings) == set()
    entries, _ = await store.run_history(HistoryQuery(limit=10))
    [recorded] = entries
    assert recorded == HistoryEntry.from_bytes(expected.to_bytes(), expected.id) == expected


async def test_a_fire_time_before_1970_is_recorded_with_the_rest_of_its_batch(store: Store) -> None:
    old_fire = datetime(1969, 7, 20, 20, 17, 40, 500_000, tzinfo=UTC)
    tasks = [task("apollo", at=old_fire), task("now")]
    await store.add(tasks)
    runs = sorted(await start_run(store, OWNER), key=lambda run: run.task_id)
    for run, t in zip(runs, tasks, strict=True):
        run.task = t
    results = [RunResult(run=run, outcome=RunOutcome.SUCCESS, finished_at=T0 + SECOND) for run in runs]

    assert await store.complete(OWNER, results, history=HistorySettings()) == set()

    entries, _ = await store.run_history(HistoryQuery(limit=10))
    assert sorted((e.task_id, e.fire_time) for e in entries) == [
        ("apollo", old_fire),
        ("now", runs[1].fire_time),
    ]


async def test_a_run_of_a_removed_task_records_the_same_entry_both_ways(store: Store, peer: Store) -> None:
    t = task(ODD_ID, name=ODD_NAME)
    await store.add([t])
    [run] = await start_run(store, OWNER)
    assert await store.remove([t.id]) == [t.id]  # its run goes on, detached, and comes back without a task
    result = RunResult(
        run=run, outcome=RunOutcome.CANCELLED, finished_at=T0 + SECOND, error="its task was removed"
    )
    settings = HistorySettings(record_args=True)
    recorder = HistoryRecorder(peer, settings, owner=OWNER, clock=lambda: T0, by_completions=False)
    recorder.completed([result], set())
    [expected] = recorder._pending

    assert await store.complete(OWNER, [result], history=settings) == set()

    entries, _ = await store.run_history(HistoryQuery(task_id=ODD_ID))
    assert entries == [expected]
    assert expected.task_name == ODD_ID
    assert await store.list_runs() == []


async def test_a_resent_completion_recorded_again_by_the_engine_stays_one_entry(store: Store) -> None:
    t = task(ODD_ID, name=ODD_NAME)
    await store.add([t])
    [run] = await start_run(store, OWNER)
    run.task = t
    result = RunResult(run=run, outcome=RunOutcome.SUCCESS, finished_at=T0 + SECOND, started_at=T0)
    recorder = HistoryRecorder(store, HistorySettings(), owner=OWNER, clock=lambda: T0)

    assert await store.complete(OWNER, [result], history=recorder.completions) == set()
    # its reply lost: sent again, it finds the run gone, and the engine records the entry again
    lost = await store.complete(OWNER, [result], history=recorder.completions)
    recorder.completed([result], lost)
    await recorder.flush(force=True)

    for query in (HistoryQuery(), HistoryQuery(task_id=ODD_ID)):
        entries, _ = await store.run_history(query)
        assert [(e.run_id, e.started_at) for e in entries] == [(run.id, T0)]


async def test_each_entry_of_a_mixed_batch_equals_the_recorded_one(store: Store, peer: Store) -> None:
    # a batch with dead letters (arguments before the history's), a deferral (no entry), a run
    # completed before (not completed here) and a re-queued run sent again (waiting under its
    # token): each entry recorded is the recorder's for the same result, and no other is
    settings = HistorySettings(record_args=True, message_limit=12)
    ids = [f"{ODD_ID}-{n}" for n in range(6)]
    tasks = {i: task(i, name=f"{ODD_NAME}{i}", args=[i]) for i in ids}
    await store.add(list(tasks.values()))
    runs = sorted(await start_run(store, OWNER), key=lambda run: run.task_id)
    for run in runs:
        run.task = tasks[run.task_id]
    dead, deferred, gone, retried, ok, failed = runs

    def result(run: Run, outcome: RunOutcome, **fields: Any) -> RunResult:
        fields.setdefault("started_at", T0 + SECOND)
        fields.setdefault("finished_at", T0 + 2 * SECOND)
        return RunResult(run=run, outcome=outcome, **fields)

    early = [
        result(gone, RunOutcome.SUCCESS),
        result(retried, RunOutcome.FAILURE, error="boom", retry_at=T0 + 9 * SECOND),
    ]
    assert await store.complete(OWNER, early, history=settings) == set()
    batch = [
        result(
            dead, RunOutcome.FAILURE, error="KeyError: " + "k" * 20, error_type="KeyError", dead_letter=True
        ),
        result(deferred, RunOutcome.DEFERRED, retry_at=T0 + 5 * SECOND),
        result(gone, RunOutcome.SUCCESS, finished_at=T0 + 3 * SECOND),
        early[1],
        result(ok, RunOutcome.SUCCESS, started_at=None),
        result(failed, RunOutcome.FAILURE, error="half a pair", error_type="x.Y"),
    ]
    assert await store.complete(OWNER, batch, history=settings) == {gone.id}

    recorder = HistoryRecorder(peer, settings, owner=OWNER, clock=lambda: T0, by_completions=False)
    recorder.completed([*early, batch[0], *batch[4:]], set())
    entries, _ = await store.run_history(HistoryQuery(limit=100))
    assert sorted(entries, key=lambda e: e.id) == sorted(recorder._pending, key=lambda e: e.id)


async def test_a_run_set_aside_is_recorded_as_a_failure_and_a_deferral_set_aside_not_at_all(
    store: Store,
) -> None:
    # a deferral is a run kept unrun (its task quarantined, its circuit breaker open): before,
    # one whose completion the store refused was recorded as a failure each time it was set aside
    await store.add([task(f"{ODD_ID}-ran", name=ODD_NAME), task(f"{ODD_ID}-kept", name=ODD_NAME)])
    ran, kept = sorted(await start_run(store, OWNER), key=lambda run: run.task_id, reverse=True)
    recorder = HistoryRecorder(store, HistorySettings(), owner=OWNER, clock=lambda: T0)
    finished = T0 + SECOND
    deferral = RunResult(
        run=kept, outcome=RunOutcome.DEFERRED, finished_at=finished, retry_at=T0 + 30 * SECOND, started_at=T0
    )

    recorder.set_aside(
        RunResult(run=ran, outcome=RunOutcome.SUCCESS, finished_at=finished, started_at=T0), "refused"
    )
    recorder.set_aside(deferral, "refused")
    await recorder.flush(force=True)

    entries, _ = await store.run_history(HistoryQuery())
    assert [(e.run_id, e.outcome, e.error_type, e.error) for e in entries] == [
        (ran.id, HistoryOutcome.FAILURE, "backbeat.errors.StoreError", "refused")
    ]
