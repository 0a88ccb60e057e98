"""``scheduler.run_history``: runs of the scheduler's processes read back from the store (a
SQLite file, Redis, PostgreSQL), filtered and paged; bad arguments refused at call time. A
recorder whose store write fails logs and drops its batch: only reading the store back shows it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from backbeat import ConfigurationError, HistoryOutcome, RetryPolicy
from tests.integration import jobs
from tests.integration.test_cli import cli, cli_json
from tests.scheduling import SchedulerFactory, wait_for


async def test_finished_runs_are_listed_newest_first_filtered_and_paged(
    make_scheduler: SchedulerFactory, store_url: str, record_file: Path
) -> None:
    scheduler = make_scheduler(store_url)
    await scheduler.start()
    ok = [
        await scheduler.schedule_immediate_task(f"ok-{i}", jobs.note, args=[str(record_file), str(i)])
        for i in range(3)
    ]
    failing = await scheduler.schedule_immediate_task(
        "failing", jobs.fail, args=[str(record_file)], retry=RetryPolicy(max_attempts=2, initial_delay=0.05)
    )

    await wait_for(lambda: len(jobs.read_records(record_file)) == 5)
    await wait_for(lambda: scheduler.active_runs() == [])
    await scheduler.shutdown()  # completes (and records) what has finished

    page = await scheduler.run_history(limit=100)
    assert len(page.entries) == 5 and page.next_cursor is None
    ends = [entry.ended_at for entry in page.entries]
    assert ends == sorted(ends, reverse=True)

    failed = await scheduler.run_history(outcome="failed")
    assert [(e.task_id, e.outcome, e.attempt) for e in reversed(failed.entries)] == [
        (failing, HistoryOutcome.RETRY_SCHEDULED, 1),
        (failing, HistoryOutcome.DEAD_LETTERED, 2),
    ]
    assert failed.entries[0].error_type == "builtins.RuntimeError"
    mine = await scheduler.run_history(task_id=ok[1])
    assert [(e.task_name, e.outcome) for e in mine.entries] == [("ok-1", HistoryOutcome.SUCCESS)]
    assert mine.entries[0].duration is not None and mine.entries[0].duration >= 0

    first = await scheduler.run_history(limit=2)
    second = await scheduler.run_history(limit=2, cursor=first.next_cursor)
    third = await scheduler.run_history(limit=2, cursor=second.next_cursor)
    assert [e.id for e in first.entries + second.entries + third.entries] == [e.id for e in page.entries]
    assert third.next_cursor is None
    assert (await scheduler.run_history(since=timedelta(hours=1))).entries == page.entries
    assert (await scheduler.run_history(since=datetime.now(UTC) + timedelta(hours=1))).entries == []


async def test_bad_arguments_are_refused_naming_what_is_wrong(
    make_scheduler: SchedulerFactory, sqlite_url: str
) -> None:
    scheduler = make_scheduler(sqlite_url)
    with pytest.raises(ValueError, match="unknown run outcome 'broken'; known: failed, success"):
        await scheduler.run_history(outcome="broken")
    with pytest.raises(ValueError, match="limit must be an integer from 1 to 1000, not 0"):
        await scheduler.run_history(limit=0)
    with pytest.raises(ValueError, match="cursor 'nope' is not a cursor returned by run_history"):
        await scheduler.run_history(cursor="nope")
    with pytest.raises(ValueError, match="since must be an aware datetime"):
        await scheduler.run_history(since=datetime(2026, 1, 1))
    with pytest.raises(ConfigurationError, match="history_per_task must be an integer >= 1, not 0"):
        make_scheduler(sqlite_url, history_per_task=0)
    with pytest.raises(ConfigurationError, match="history_retention must be a positive timedelta"):
        make_scheduler(sqlite_url, history_retention=timedelta(0))


async def test_history_off_records_nothing(
    make_scheduler: SchedulerFactory, sqlite_url: str, record_file: Path
) -> None:
    scheduler = make_scheduler(sqlite_url, history=False)
    await scheduler.start()
    await scheduler.schedule_immediate_task("once", jobs.note, args=[str(record_file)])
    await wait_for(lambda: len(jobs.read_records(record_file)) == 1)
    await wait_for(lambda: scheduler.active_runs() == [])
    await scheduler.shutdown()
    assert (await scheduler.run_history()).entries == []


async def test_runs_list_filters_pages_and_refuses_a_bad_since(
    make_scheduler: SchedulerFactory, sqlite_url: str, record_file: Path
) -> None:
    scheduler = make_scheduler(sqlite_url)
    await scheduler.start()
    await scheduler.schedule_immediate_task("good", jobs.note, args=[str(record_file)])
    await scheduler.schedule_immediate_task("bad", jobs.fail, args=[str(record_file)])
    await wait_for(lambda: len(jobs.read_records(record_file)) == 2)
    await wait_for(lambda: scheduler.active_runs() == [])
    await scheduler.shutdown()

    failed = await cli_json("runs", "list", "--store", sqlite_url, "--failed", "--since", "1h")
    assert [(run["task_name"], run["outcome"]) for run in failed["runs"]] == [("bad", "dead_lettered")]
    assert failed["runs"][0]["error"] == "this job always fails"
    first = await cli_json("runs", "list", "--store", sqlite_url, "--limit", "1")
    second = await cli_json(
        "runs", "list", "--store", sqlite_url, "--limit", "1", "--cursor", first["next_cursor"]
    )
    assert {first["runs"][0]["task_name"], second["runs"][0]["task_name"]} == {"good", "bad"}
    assert second["next_cursor"] is None

    code, out, _ = await cli("runs", "list", "--store", sqlite_url, "--task", failed["runs"][0]["task_id"])
    assert code == 0 and "dead_lettered" in out and "good" not in out
    code, _, err = await cli("runs", "list", "--store", sqlite_url, "--since", "yesterday")
    assert code == 2 and "since 'yesterday' is neither a duration" in err
