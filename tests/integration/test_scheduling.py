"""The scheduling calls of the facade, run for real on a SQLite file."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from backbeat import (
    EncodingError,
    EventKind,
    InvalidTriggerError,
    NotPersistableError,
    SchedulerEvent,
    TaskNotFoundError,
)
from tests.integration import jobs
from tests.scheduling import SchedulerFactory, wait_for


async def test_delayed_at_and_immediate_tasks_run_once(
    make_scheduler: SchedulerFactory, sqlite_url: str, record_file: Path
) -> None:
    scheduler = make_scheduler(sqlite_url)
    await scheduler.start()
    now = datetime.now(UTC)
    await scheduler.schedule_immediate_task("now", jobs.note, args=[str(record_file), "now"])
    await scheduler.schedule_delayed_task(
        "soon", jobs.note, delay_seconds=0.3, args=[str(record_file), "soon"]
    )
    await scheduler.schedule_at(
        "at",
        jobs.note,
        scheduled_time=now + timedelta(seconds=0.5),
        args=[str(record_file), "at"],
        tags=["x"],
    )
    await wait_for(lambda: len(jobs.read_records(record_file)) == 3)
    labels = sorted(r["label"] for r in jobs.read_records(record_file))
    assert labels == ["at", "now", "soon"]
    await wait_for(lambda: scheduler.active_runs() == [])
    await asyncio.sleep(0.3)
    assert await scheduler.list_tasks() == []  # one-shot tasks leave the store once they ran


async def test_recurring_interval_and_tag_cancel(
    make_scheduler: SchedulerFactory, sqlite_url: str, record_file: Path
) -> None:
    scheduler = make_scheduler(sqlite_url)
    await scheduler.start()
    task_id = await scheduler.add_task(
        jobs.note, "interval", seconds=0.2, args=[str(record_file), "tick"], tags=["ticker"]
    )
    await wait_for(lambda: len(jobs.read_records(record_file)) >= 3)
    info = await scheduler.get_task_info(task_id)
    assert info is not None and info.runs >= 2 and info.tags == ("ticker",)
    assert await scheduler.cancel_tasks_by_tag("ticker") == [task_id]
    await asyncio.sleep(0.3)
    count = len(jobs.read_records(record_file))
    await asyncio.sleep(0.5)
    assert len(jobs.read_records(record_file)) == count
    assert await scheduler.get_task_info(task_id) is None


async def test_pause_resume_reschedule_trigger_now(
    make_scheduler: SchedulerFactory, sqlite_url: str, record_file: Path
) -> None:
    scheduler = make_scheduler(sqlite_url)
    await scheduler.start()
    task_id = await scheduler.add_task(jobs.note, "cron", cron="0 0 1 1 *", args=[str(record_file), "cron"])
    info = await scheduler.get_task_info(task_id)
    assert info is not None and info.next_run_time is not None and info.next_run_time.month == 1
    await scheduler.pause_task(task_id)
    paused = await scheduler.get_task_info(task_id)
    assert paused is not None and paused.paused
    run_id = await scheduler.trigger_job_now(task_id)
    assert run_id is not None and run_id.startswith(f"{task_id}@")
    await wait_for(lambda: len(jobs.read_records(record_file)) == 1)
    assert jobs.read_records(record_file)[0]["run_id"] == run_id
    await scheduler.resume_task(task_id)
    moved = await scheduler.reschedule(task_id, "interval", seconds=0.2)
    assert moved.trigger.startswith("interval")
    await wait_for(lambda: len(jobs.read_records(record_file)) >= 3)
    with pytest.raises(TaskNotFoundError):
        await scheduler.pause_task("no-such-task")
    assert await scheduler.stop_task(task_id) is True
    assert await scheduler.stop_task(task_id) is False


async def test_bad_input_is_refused_and_names_the_problem(
    make_scheduler: SchedulerFactory, sqlite_url: str
) -> None:
    scheduler = make_scheduler(sqlite_url)
    await scheduler.start()
    with pytest.raises(InvalidTriggerError, match="61"):
        await scheduler.schedule_recurring_task("bad", jobs.note, cron="61 * * * *", args=["x"])
    with pytest.raises(EncodingError, match=r"args\[1\]"):
        await scheduler.schedule_immediate_task("bad", jobs.note, args=["x", asyncio.Lock()])
    with pytest.raises(NotPersistableError, match="lambda"):
        await scheduler.schedule_immediate_task("bad", lambda: None, durable=True)
    with pytest.raises(InvalidTriggerError, match=r"interval= \(unexpected arguments: every\)"):
        await scheduler.schedule_recurring_task("bad", jobs.note, every=5, args=["x"])
    with pytest.raises(InvalidTriggerError, match="not both"):
        await scheduler.schedule_recurring_task("bad", jobs.note, cron="* * * * *", interval=5, args=["x"])
    with pytest.raises(EncodingError, match="the key 1 is a int"):
        await scheduler.schedule_immediate_task("bad", jobs.note, kwargs={1: "x"})  # type: ignore[dict-item]
    with pytest.raises(TypeError, match="not the string 'reports'"):
        await scheduler.schedule_immediate_task("bad", jobs.note, args=["x"], tags="reports")
    assert await scheduler.list_tasks() == []


async def test_a_lambda_is_a_local_task(
    make_scheduler: SchedulerFactory, sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    scheduler = make_scheduler(sqlite_url)
    await scheduler.start()
    ran = asyncio.Event()
    task_id = await scheduler.schedule_delayed_task("local", lambda: ran.set(), delay_seconds=0.2)
    listed = await scheduler.list_tasks()
    assert [(t.id, t.local) for t in listed] == [(task_id, True)]
    assert "local task" in caplog.text
    await asyncio.wait_for(ran.wait(), 5)


async def test_events_reach_listeners_and_the_stream(
    make_scheduler: SchedulerFactory, sqlite_url: str, record_file: Path
) -> None:
    scheduler = make_scheduler(sqlite_url)
    heard: list[SchedulerEvent] = []
    streamed: list[EventKind] = []
    scheduler.add_listener(heard.append, [EventKind.RUN_EXECUTED, EventKind.RUN_FAILED])
    scheduler.event_stream.subscribe(lambda e: streamed.append(e.kind))
    await scheduler.start()
    await scheduler.schedule_immediate_task("ok", jobs.note, args=[str(record_file)])
    await scheduler.schedule_immediate_task("ko", jobs.fail, args=[str(record_file)])
    await wait_for(lambda: len(heard) == 2)
    kinds = {e.task_name: e.kind for e in heard}
    assert kinds == {"ok": EventKind.RUN_EXECUTED, "ko": EventKind.RUN_FAILED}
    failed = next(e for e in heard if e.kind is EventKind.RUN_FAILED)
    assert isinstance(failed.error, RuntimeError) and "always fails" in (failed.traceback or "")
    assert EventKind.SCHEDULER_STARTED in streamed and EventKind.TASK_ADDED in streamed
    assert EventKind.RUN_SUBMITTED in streamed


async def test_sync_list_tasks_from_a_thread(make_scheduler: SchedulerFactory, sqlite_url: str) -> None:
    scheduler = make_scheduler(sqlite_url)
    await scheduler.start()
    task_id = await scheduler.add_task(jobs.note, "interval", minutes=5, args=["x"])
    from_thread = await asyncio.to_thread(
        lambda: [(t.id, t.next_run_time is not None) for t in scheduler.list_tasks()]
    )
    assert from_thread == [(task_id, True)]
    in_loop = [t.id for t in scheduler.list_tasks()]  # seed 000 iterates it directly
    assert in_loop == [task_id]
