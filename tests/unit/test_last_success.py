"""``LastSuccess``: a task name's last success, kept while a recurring task of it seen here is left."""

from __future__ import annotations

import tracemalloc
from datetime import UTC, datetime

from backbeat.model.records import Task
from backbeat.observability.last_success import TRACKED, LastSuccess

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)


def task(task_id: str, name: str, *, every: bool = True) -> Task:
    trigger = {"type": "interval", "seconds": 60} if every else {"type": "date", "run_date": T0.isoformat()}
    return Task(id=task_id, name=name, job="m:f", trigger=trigger, next_run_time=T0)


def test_a_name_goes_with_the_last_recurring_task_of_it_removed() -> None:
    last = LastSuccess()
    last.succeeded(task("a", "bake"), 1.0)
    last.succeeded(task("b", "bake"), 2.0)
    assert last.removed("a") is None and last.by_name == {"bake": 2.0}
    assert last.removed("unknown") is None
    assert last.removed("b") == "bake" and last.by_name == {}
    assert last.removed("b") is None


def test_a_one_shot_success_is_kept_by_name_without_its_id() -> None:
    last = LastSuccess()
    last.succeeded(task("once", "charge", every=False), 1.0)
    assert last.removed("once") is None and last.by_name == {"charge": 1.0}


def test_a_renamed_task_counts_for_its_new_name_only() -> None:
    last = LastSuccess()
    last.succeeded(task("a", "old"), 1.0)
    last.succeeded(task("b", "old"), 1.5)
    assert last.succeeded(task("a", "new"), 2.0) is None  # "b" still has the old name
    assert last.succeeded(task("b", "new"), 3.0) == "old"
    assert last.by_name == {"new": 3.0}
    assert last.removed("a") is None and last.removed("b") == "new"


def test_what_is_kept_is_bounded_by_the_names_not_by_the_tasks_that_came_and_went() -> None:
    last = LastSuccess()
    last.succeeded(task("warm-up", "poll"), 0.0)
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for i in range(20_000):  # per-order pollers sharing a name, each removed elsewhere when done
            last.succeeded(task(f"order-{i}", "poll"), float(i))
        grown = sum(stat.size_diff for stat in tracemalloc.take_snapshot().compare_to(before, "filename"))
    finally:
        tracemalloc.stop()
    assert last.by_name == {"poll": 19_999.0}
    assert grown < 500_000, f"{grown} bytes kept for 20,000 tasks of one name"  # 3.7 MB unbounded


def test_a_name_with_a_task_beyond_those_followed_keeps_its_value() -> None:
    last = LastSuccess()
    for i in range(TRACKED):
        last.succeeded(task(f"t{i}", "many"), float(i))
    last.succeeded(task("beyond", "many"), 5.0)
    assert all(last.removed(f"t{i}") is None for i in range(TRACKED))
    assert last.by_name == {"many": 5.0}


def test_the_last_run_of_a_removed_task_does_not_bring_its_name_back() -> None:
    last = LastSuccess()
    last.succeeded(task("a", "report"), 1.0)
    last.succeeded(task("b", "other"), 1.0)
    assert last.removed("a") == "report"
    last.succeeded(task("a", "report"), 2.0)  # its run was going when it was removed
    assert last.by_name == {"other": 1.0}
    assert last.removed("b") == "other"
