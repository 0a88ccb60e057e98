"""The ``backbeat`` console command, run as a subprocess against a real SQLite store."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.integration import jobs
from tests.scheduling import SchedulerFactory


def backbeat(*args: str) -> subprocess.CompletedProcess[str]:
    command = shutil.which("backbeat", path=str(Path(sys.executable).parent))
    assert command is not None, "the backbeat console script is installed with the package"
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([command, *args], capture_output=True, text=True, timeout=60, check=False, env=env)


async def test_tasks_list_shows_stored_tasks(make_scheduler: SchedulerFactory, sqlite_url: str) -> None:
    producer = make_scheduler(sqlite_url, producer_only=True)
    await producer.start()
    await producer.add_task(jobs.note, "0 8 * * *", args=["x"], id="daily-report", tags=["reports"])
    result = backbeat("tasks", "list", "--store", sqlite_url, "--tag", "reports")
    assert result.returncode == 0, result.stderr
    assert "daily-report" in result.stdout and "reports" in result.stdout


def test_a_wrong_store_url_is_a_clear_error() -> None:
    result = backbeat("tasks", "list", "--store", "ftp://nowhere")
    assert result.returncode == 2
    assert "ftp" in result.stdout + result.stderr
