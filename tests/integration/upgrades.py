"""What an upgraded store must show: the data an older release wrote, then the same answers as a
store that never was upgraded.

Leases count by the store's clock, which differs between the two runs: the old owner's are
taken with a zero lease (lapsed at once), and ``observe`` shows the lease end of a leased run
only as :data:`LEASED`. Fencing tokens come from each store's own counter (an old store has
handed out none), so ``observe`` checks that the runs it leases get new, distinct ones and
then shows every token as 0.

An old store is made as this release writes one and then has its schema taken back by the
test's *downgrades*: SQL that undoes each migration after version 1 (the statements an older
release ran no longer fit the current schema).

``write_history`` leaves tasks in the states a running scheduler leaves behind; ``observe``
lists, claims, fires and completes them and returns everything the store answered. A test
writes the history into an old store and into a fresh one, opens both with the current code
and compares what ``observe`` saw.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from backbeat.abc import Store
from backbeat.model.records import Run, RunOutcome, RunResult, TaskFilter
from tests.contract.helpers import LEASE, MINUTE, T0, decide, finished, task

LATER = T0 + LEASE + MINUTE
"""When ``observe`` works (the callers' clock): the rescheduled tasks are due."""
LAPSED = timedelta(0)
"""The old owner's leases: over as soon as they are taken, by any store's clock."""
LEASED = datetime(1970, 1, 1, tzinfo=UTC)
"""What ``observe`` shows as the lease end of a run with an owner (a time of the store's clock)."""


def _leased(runs: list[Run]) -> list[Run]:
    for run in runs:
        assert run.lease_until is not None
    shown = [replace(run, fencing_token=0) for run in runs]
    return [run if run.owner is None else replace(run, lease_until=LEASED) for run in shown]


def check_downgrades(downgrades: Mapping[int, Sequence[str]], latest: int) -> list[Sequence[str]]:
    """The downgrades to apply, newest first; every migration after version 1 must have one."""
    assert sorted(downgrades) == list(range(2, latest + 1)), "a new migration needs its downgrade in the test"
    return [downgrades[version] for version in sorted(downgrades, reverse=True)]


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
    claim = await store.claim_due("old", now=T0, lease=LAPSED, limit=10)
    fired = await store.fire("old", [decide(t, then=T0 + MINUTE) for t in claim.tasks], now=T0, lease=LAPSED)
    runs = {run.task_id: run for result in fired for run in result.runs}
    await store.complete("old", [finished(runs["due-1"])])


async def observe(store: Store) -> list[object]:
    """Everything ``store`` answers while it lists, claims, fires and completes the history's
    tasks (one run failing into a dead letter) and writes a shared state document."""
    seen: list[object] = [
        await store.list(),
        await store.list(TaskFilter(tag="nightly")),
        _leased(await store.list_runs()),
        await store.next_wakeup(now=LATER),
    ]
    claim = await store.claim_due("new", now=LATER, lease=LEASE, limit=10)
    fired = await store.fire("new", [decide(t) for t in claim.tasks], now=LATER, lease=LEASE)
    runs = sorted(claim.runs + [run for result in fired for run in result.runs], key=lambda run: run.id)
    tokens = [run.fencing_token for run in runs]
    assert 0 not in tokens and len(set(tokens)) == len(tokens), tokens
    failed, *succeeded = runs
    results = [
        RunResult(run=failed, outcome=RunOutcome.FAILURE, finished_at=LATER, error="E: x", dead_letter=True),
        *(finished(run, at=LATER) for run in succeeded),
    ]
    seen += [  # ties in due time may come in any order
        sorted(claim.tasks, key=lambda t: t.id),
        _leased(sorted(claim.runs, key=lambda run: run.id)),
        sorted((replace(r, runs=_leased(r.runs)) for r in fired), key=lambda result: result.task_id),
        await store.complete("new", results),
        await store.list(),
        _leased(await store.list_runs()),
        await store.dead_letters(),
        await store.put_state("breaker:x", {"state": "open"}, version=0),
        await store.get_state("breaker:x"),
        await store.next_wakeup(now=LATER),
    ]
    return seen
