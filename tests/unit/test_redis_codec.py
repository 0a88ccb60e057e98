"""The Redis store's task documents (key layout 2): lean when written, full ones still read."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson

from backbeat.model.records import Task, TaskOptions
from backbeat.stores.redis import codec

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
LIVE = b"1767603600000000|3|1|7|2|1767600000000000|1||success"
"""next run time, version, running, runs, failures, last run, max_instances, flags, last outcome."""


def stored(task: Task) -> Task:
    """``task`` after a trip through the store's encoding (its live fields as ``LIVE`` holds them)."""
    restored = codec.task_from(task.id.encode(), LIVE, codec.document(task))
    assert restored is not None
    return restored


def with_live(task: Task) -> Task:
    return task.copy(
        next_run_time=T0,
        version=3,
        running=1,
        runs=7,
        failures=2,
        last_run_at=datetime(2026, 1, 5, 8, tzinfo=UTC),
        last_outcome="success",
    )


def test_a_plain_task_keeps_only_what_differs_from_the_defaults() -> None:
    task = Task(
        id="t1",
        name="remind",
        job="func:app:remind",
        trigger={"type": "date"},
        next_run_time=T0,
        args=["A-1"],
        created_at=T0,
    )

    assert orjson.loads(codec.document(task)) == {
        "name": "remind",
        "job": "func:app:remind",
        "trigger": {"type": "date"},
        "args": ["A-1"],
        "created_at": "2026-01-05T09:00:00+00:00",
    }
    assert stored(task) == with_live(task)


def test_every_field_set_away_from_its_default_comes_back() -> None:
    task = Task(
        id="t2",
        name="n",
        job="func:app:j",
        trigger={"type": "interval", "seconds": 60},
        next_run_time=T0,
        args=[1, "two"],
        kwargs={"k": [3]},
        data={"order": "A-1"},
        tags=("a", "b"),
        options=TaskOptions(
            misfire_grace_time=None, coalesce=False, max_instances=3, timeout=9.5, retry={"max_attempts": 2}
        ),
        paused=True,
        orphaned="not registered",
        created_at=T0,
        trace_context={"traceparent": "00-x"},
    )

    assert stored(task) == with_live(task)


def test_a_full_document_of_layout_1_is_read_with_the_live_fields_winning() -> None:
    task = Task(
        id="t3",
        name="n",
        job="func:app:j",
        trigger={"type": "date"},
        next_run_time=None,
        args=["A-1"],
        created_at=T0,
        version=99,
    )

    restored = codec.task_from(b"t3", LIVE, task.to_bytes())

    assert restored == with_live(task)
