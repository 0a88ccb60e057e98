"""Builders shared by the contract tests: fixed times, tasks, decisions and results."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from backbeat.abc import Store
from backbeat.model.records import FireDecision, Run, RunOutcome, RunResult, Task, TaskOptions

T0 = datetime(2024, 1, 1, 12, 0, 0, 123457, tzinfo=UTC)
"""The callers' clock (``now``): schedules are judged by it."""
STORE_T0 = datetime(2025, 6, 1, 8, 30, 0, 654321, tzinfo=UTC)
"""Where the fake lease clock of the memory and SQLite stores starts: leases are judged by
the store's clock, never the callers' (a server store's is the real time)."""
LEASE = timedelta(seconds=10)
SHORT = timedelta(seconds=0.4)
"""A lease the tests let end (a server store's tests wait for it: keep it short)."""
MINUTE = timedelta(minutes=1)


def task(
    task_id: str,
    *,
    at: datetime | None = T0,
    tags: Sequence[str] = (),
    max_instances: int = 1,
    **fields: Any,
) -> Task:
    """A task due ``at`` (every minute, by its trigger)."""
    fields.setdefault("name", f"name-{task_id}")
    fields.setdefault("job", "tests.contract:job")
    fields.setdefault("options", TaskOptions(max_instances=max_instances))
    return Task(
        id=task_id,
        trigger={"type": "interval", "seconds": 60},
        next_run_time=at,
        tags=tuple(tags),
        created_at=T0,
        **fields,
    )


def decide(
    task: Task, fire_times: Sequence[datetime] | None = None, *, then: datetime | None = None
) -> FireDecision:
    """Run ``task`` at ``fire_times`` (default: its next run time) and schedule it ``then``."""
    times = list(fire_times) if fire_times is not None else [t for t in [task.next_run_time] if t]
    return FireDecision(task_id=task.id, claimed_version=task.version, fire_times=times, next_run_time=then)


def finished(
    run: Run,
    outcome: RunOutcome = RunOutcome.SUCCESS,
    *,
    at: datetime = T0,
    retry_at: datetime | None = None,
) -> RunResult:
    return RunResult(run=run, outcome=outcome, finished_at=at, retry_at=retry_at)


def held(*runs: Run) -> dict[str, int]:
    """The leases of ``runs`` as ``extend`` and ``release`` take them: run id -> fencing token."""
    return {run.id: run.fencing_token for run in runs}


async def start_run(
    store: Store,
    owner: str,
    *,
    now: datetime = T0,
    then: datetime | None = None,
    lease: timedelta = LEASE,
) -> list[Run]:
    """Claim what is due for ``owner`` and fire each claimed task once; the runs created."""
    claim = await store.claim_due(owner, now=now, lease=lease, limit=100)
    results = await store.fire(owner, [decide(t, then=then) for t in claim.tasks], now=now, lease=lease)
    return [run for result in results for run in result.runs]
