"""The run context a job reads: built from the run the first time the job asks, once per run."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from backbeat.engine.context import (
    LazyRunContext,
    current_run,
    get_service,
    reset_current_run,
    set_current_run,
)
from backbeat.errors import SchedulerNotRunningError
from backbeat.model.records import Run, Task

T0 = datetime(2026, 3, 29, 1, 0, tzinfo=UTC)


class Provider:
    def get_service(self, service_type: type[object]) -> object:
        return service_type()


def test_current_run_is_built_once_from_the_run_and_asks_the_lease_of_its_own_run() -> None:
    task = Task(id="t1", name="report", job="app:report", trigger={}, next_run_time=T0, tags=("a", "b"))
    run = Run(
        id=f"t1@{T0.isoformat()}", task_id="t1", fire_time=T0, lease_until=T0, attempt=2, fencing_token=7
    )
    asked: list[str] = []

    def holds(run_id: str) -> bool:
        asked.append(run_id)
        return False

    token = set_current_run(LazyRunContext(task, run, "host:1:x", Provider(), holds))
    try:
        context = current_run()
        assert current_run() is context
        assert (context.task_id, context.task_name, context.run_id, context.fire_time) == (
            "t1",
            "report",
            run.id,
            T0,
        )
        assert (context.attempt, context.fencing_token, context.tags, context.owner) == (
            2,
            7,
            ("a", "b"),
            "host:1:x",
        )
        assert context.lease_valid() is False
        assert asked == [run.id]
        assert get_service(str) == ""
    finally:
        reset_current_run(token)
    with pytest.raises(SchedulerNotRunningError):
        current_run()
