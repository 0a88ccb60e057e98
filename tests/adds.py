"""The task the add tests of every store add: a one-shot due at a fixed time."""

from __future__ import annotations

from datetime import UTC, datetime

from backbeat.model.records import Task

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def task(task_id: str, *tags: str, created_at: datetime = T0) -> Task:
    """A one-shot named ``task_id``, due at ``T0`` (two calls with one id give equal tasks)."""
    return Task(
        id=task_id,
        name=task_id,
        job="tests:job",
        trigger={"type": "date", "run_date": T0.isoformat(), "timezone": "UTC"},
        next_run_time=T0,
        tags=tags,
        created_at=created_at,
    )
