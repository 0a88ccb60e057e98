"""The ``backbeat`` command on a real SQLite store populated by a real scheduler: as a subprocess
(the installed console script) and through typer's CliRunner (in a thread, beside the scheduler)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import traceback
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from backbeat import BackgroundTaskScheduler
from backbeat.cli.app import app
from tests.integration import jobs
from tests.scheduling import SchedulerFactory, dead_letters, wait_for
from tests.web.conftest import FAST
from tests.web.populate import Populated, populate

Populating = tuple[BackgroundTaskScheduler, Populated, str, Path]


def backbeat(*args: str) -> subprocess.CompletedProcess[str]:
    command = shutil.which("backbeat", path=str(Path(sys.executable).parent))
    assert command is not None, "the backbeat console script is installed with the package"
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([command, *args], capture_output=True, text=True, timeout=60, check=False, env=env)


async def cli(*args: str) -> tuple[int, str, str]:
    """Run the command in a thread (it has its own event loop); returns (exit code, stdout, stderr),
    stderr ending with the traceback of an exception the command did not handle (CliRunner
    catches it and exits 1, where the console script would have printed it)."""
    result = await asyncio.to_thread(CliRunner().invoke, app, list(args))
    err = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        err += "".join(traceback.format_exception(result.exception))
    return result.exit_code, result.stdout, err


def said(code: int, out: str, err: str) -> str:
    """A command's exit code and output, for a failure message."""
    return f"exit code {code}\n--- stdout ---\n{out}\n--- stderr ---\n{err}"


async def cli_json(*args: str) -> Any:
    code, out, err = await cli(*args, "--json")
    assert code == 0, err
    return json.loads(out)


@pytest.fixture
async def store(sqlite_url: str, record_file: Path) -> AsyncIterator[Populating]:
    """A running scheduler, what it stored, its store URL and its jobs' record file."""
    scheduler = BackgroundTaskScheduler(store=sqlite_url, config=FAST)
    await scheduler.start_async()
    try:
        yield scheduler, await populate(scheduler, record_file), sqlite_url, record_file
    finally:
        await scheduler.stop_async(timeout=1.0)


async def test_tasks_list_shows_stored_tasks(make_scheduler: SchedulerFactory, sqlite_url: str) -> None:
    producer = make_scheduler(sqlite_url, producer_only=True)
    await producer.start()
    await producer.add_task(jobs.note, "0 8 * * *", args=["x"], id="daily-report", tags=["reports"])
    result = await asyncio.to_thread(backbeat, "tasks", "list", "--store", sqlite_url, "--tag", "reports")
    assert result.returncode == 0, result.stderr
    assert "daily-report" in result.stdout and "reports" in result.stdout
    # a cron trigger's fields in brackets are shown as they are, not taken for rich markup
    shown = await asyncio.to_thread(backbeat, "tasks", "show", "daily-report", "--store", sqlite_url)
    assert shown.returncode == 0, shown.stderr
    info = await producer.get_task_info("daily-report")
    assert info is not None and "[" in info.trigger and info.trigger in shown.stdout


async def test_tasks_list_filters_by_tag_name_and_state(store: Populating) -> None:
    _, ids, url, _ = store
    every = await cli_json("tasks", "list", "--store", url)
    assert {t["id"] for t in every} == {ids.daily, ids.cleanup, ids.reminder, ids.paused, ids.orphaned}
    reports = await cli_json("tasks", "list", "--store", url, "--tag", "reports")
    assert {t["id"] for t in reports} == {ids.daily, ids.paused}
    named = await cli_json("tasks", "list", "--store", url, "--name", "order_reminder")
    assert [t["id"] for t in named] == [ids.reminder]
    paused = await cli_json("tasks", "list", "--store", url, "--state", "paused")
    assert [t["id"] for t in paused] == [ids.paused]
    orphaned = await cli_json("tasks", "list", "--store", url, "--state", "orphaned")
    assert [t["id"] for t in orphaned] == [ids.orphaned]
    active = await cli_json("tasks", "list", "--store", url, "--state", "active")
    assert {t["id"] for t in active} == {ids.daily, ids.cleanup, ids.reminder}


async def test_tasks_show_pause_resume_trigger_and_remove(store: Populating) -> None:
    scheduler, ids, url, records = store
    shown = await cli_json("tasks", "show", ids.daily, "--store", url)
    assert shown["tags"] == ["reports"] and shown["state"] == "active" and shown["next_run_time"]

    assert (await cli("tasks", "pause", ids.daily, "--store", url))[0] == 0
    info = await scheduler.get_task_info(ids.daily)
    assert info is not None and info.paused
    code, out, _ = await cli("tasks", "resume", ids.daily, "--store", url)
    assert code == 0 and "resumed daily-report" in out
    info = await scheduler.get_task_info(ids.daily)
    assert info is not None and not info.paused

    code, out, _ = await cli("tasks", "trigger", ids.daily, "--store", url)
    assert code == 0 and "triggered daily-report" in out
    await wait_for(lambda: any(r.get("label") == "daily" for r in jobs.read_records(records)))

    assert (await cli("tasks", "remove", ids.cleanup, "--store", url))[0] == 0
    assert await scheduler.get_task_info(ids.cleanup) is None
    code, out, _ = await cli("tasks", "remove", "--tag", "reports", "--store", url)
    assert code == 0 and "removed 2 task(s)" in out
    assert [t.id for t in await scheduler.list_tasks(tag="reports")] == []


async def test_dead_letters_list_show_retry_and_remove(store: Populating) -> None:
    scheduler, ids, url, records = store
    [letter] = await cli_json("dead-letters", "list", "--store", url)
    assert letter["id"] == ids.dead_letter and letter["task_name"] == "charge_card"
    shown = await cli_json("dead-letters", "show", ids.dead_letter, "--store", url)
    assert "PaymentDeclinedError" in shown["error"] and "Traceback" in shown["traceback"]

    code, out, err = await cli("dead-letters", "retry", ids.dead_letter, "--store", url)
    assert code == 0, err
    assert "retrying" in out
    # the running scheduler runs it again; it fails again and is dead-lettered again
    await wait_for(
        lambda: len([r for r in jobs.read_records(records) if r["task_id"] == letter["task_id"]]) == 2
    )
    await dead_letters(scheduler)
    code, _, err = await cli("dead-letters", "remove", ids.dead_letter, "--store", url)
    assert code == 0, err
    assert await scheduler.list_dead_letters() == []
    code, _, err = await cli("dead-letters", "remove", ids.dead_letter, "--store", url)
    assert code == 1 and err.strip() == f"error: no dead letter with id {ids.dead_letter!r}"


async def test_stats_counts_what_is_stored(store: Populating) -> None:
    _, _, url, _ = store
    counts = await cli_json("stats", "--store", url)
    assert counts["tasks"] == 5 and counts["paused"] == 1 and counts["orphaned"] == 1
    assert counts["dead_letters"] == 1 and counts["quarantined"] == 0 and counts["next_wakeup"]
    code, out, _ = await cli("stats", "--store", url)
    assert code == 0 and "dead letters" in out


async def test_an_unknown_task_id_is_a_one_line_error(store: Populating) -> None:
    _, _, url, _ = store
    for command in ("show", "pause", "resume", "trigger", "remove"):
        code, out, err = await cli("tasks", command, "no-such-task", "--store", url)
        assert code == 1, command
        assert err == "error: no task with id 'no-such-task'\n", (command, err)
        assert "Traceback" not in out + err


def test_a_wrong_store_url_is_a_clear_error() -> None:
    result = backbeat("tasks", "list", "--store", "ftp://nowhere")
    assert result.returncode == 2
    assert "ftp" in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis://127.0.0.1:1/0", "error: store unavailable: Redis at redis://127.0.0.1:1/0 is unavailable"),
        ("sqlite:////nonexistent-dir/x/store.db", "error: store unavailable: SQLite store"),
        ("ftp://nowhere", "error: unknown store URL 'ftp://...'"),
    ],
)
def test_an_unreachable_or_wrong_store_is_one_line_without_traceback(url: str, message: str) -> None:
    result = backbeat("stats", "--store", url)
    assert result.returncode != 0
    assert result.stderr.startswith(message), result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_the_store_comes_from_the_environment(tmp_path: Path) -> None:
    env_url = f"sqlite:///{tmp_path / 'env.db'}"
    command = shutil.which("backbeat", path=str(Path(sys.executable).parent))
    assert command is not None
    env = {**os.environ, "BACKBEAT_STORE_URL": env_url}
    result = subprocess.run(
        [command, "stats", "--json"], capture_output=True, text=True, env=env, check=False
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["tasks"] == 0
    assert (tmp_path / "env.db").exists()


@pytest.mark.redis
async def test_a_redis_store_with_a_prefix(record_file: Path) -> None:
    from tests.redis_server import delete_keys, usable_redis_url

    url = usable_redis_url()
    prefix = f"bb-cli-{os.getpid()}"
    scheduler = BackgroundTaskScheduler(redis_url=url, job_store_prefix=prefix, config=FAST)
    try:
        await scheduler.start_async()
        await scheduler.add_task(
            jobs.note, "0 8 * * *", args=[str(record_file)], id="redis-daily", tags=["r"]
        )
        listed = await cli_json("tasks", "list", "--store", url, "--prefix", prefix)
        assert [t["id"] for t in listed] == ["redis-daily"]
        assert (await cli("tasks", "pause", "redis-daily", "--store", url, "--prefix", prefix))[0] == 0
        info = await scheduler.get_task_info("redis-daily")
        assert info is not None and info.paused
        code, _, err = await cli("tasks", "list", "--store", f"sqlite:///{record_file}.db", "--prefix", "p")
        assert code == 2 and "Redis stores only" in err
    finally:
        await scheduler.stop_async(timeout=1.0)
        await delete_keys(url, prefix)
