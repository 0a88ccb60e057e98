"""What an upgraded store must show: the data an older release wrote, then the same answers as a
store that never was upgraded.

``write_history`` leaves tasks in the states a running scheduler leaves behind; ``observe``
lists, claims, fires and completes them and returns everything the store answered. A test
writes the history into an old store and into a fresh one, opens both with the current code
and compares what ``observe`` saw.
"""

from __future__ import annotations

from datetime import timedelta

from backbeat.abc import Store
from backbeat.model.records import RunOutcome, RunResult, TaskFilter
from tests.contract.helpers import LEASE, MINUTE, T0, decide, finished, task

LATER = T0 + LEASE + MINUTE
"""When ``observe`` works: the old owner's lease has lapsed and the rescheduled tasks are due."""


async def write_history(store: Store) -> None:
    """Tasks due, later, paused and tagged; two fired by ``old``: one run completed, one still out."""
    await store.add(
        [
            task("due-1", tags=("nightly",)),
            task("due-2", tags=("nightly", "billing")),
            task("later", at=T0 + timedelta(hours=1)),
            task("paused", paused=True),
        ]
    )
    claim = await store.claim_due("old", now=T0, lease=LEASE, limit=10)
    fired = await store.fire("old", [decide(t, then=T0 + MINUTE) for t in claim.tasks], now=T0, lease=LEASE)
    runs = {run.task_id: run for result in fired for run in result.runs}
    await store.complete("old", [finished(runs["due-1"])])


async def observe(store: Store) -> list[object]:
    """Everything ``store`` answers while it lists, claims, fires and completes the history's
    tasks (one run failing into a dead letter) and writes a shared state document."""
    seen: list[object] = [
        await store.list(),
        await store.list(TaskFilter(tag="nightly")),
        await store.list_runs(),
        await store.next_wakeup(),
    ]
    claim = await store.claim_due("new", now=LATER, lease=LEASE, limit=10)
    fired = await store.fire("new", [decide(t) for t in claim.tasks], now=LATER, lease=LEASE)
    runs = sorted(claim.runs + [run for result in fired for run in result.runs], key=lambda run: run.id)
    failed, *succeeded = runs
    results = [
        RunResult(run=failed, outcome=RunOutcome.FAILURE, finished_at=LATER, error="E: x", dead_letter=True),
        *(finished(run, at=LATER) for run in succeeded),
    ]
    seen += [  # ties in due time may come in any order
        sorted(claim.tasks, key=lambda t: t.id),
        sorted(claim.runs, key=lambda run: run.id),
        sorted(fired, key=lambda result: result.task_id),
        await store.complete("new", results),
        await store.list(),
        await store.list_runs(),
        await store.dead_letters(),
        await store.put_state("breaker:x", {"state": "open"}, version=0),
        await store.get_state("breaker:x"),
        await store.next_wakeup(),
    ]
    return seen
