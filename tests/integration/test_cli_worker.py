"""``backbeat worker APP`` as a real process on a SQLite store: it runs the application's jobs,
adds its declared tasks, and stops gracefully on SIGTERM and SIGINT."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration import jobs
from tests.scheduling import ROOT, SchedulerFactory, wait_for


class WorkerProcess:
    """``backbeat worker ...`` with stdout read up to its ready line."""

    def __init__(self, *args: str, cwd: Path = ROOT) -> None:
        command = shutil.which("backbeat", path=str(Path(sys.executable).parent))
        assert command is not None
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.process = subprocess.Popen(
            [command, "worker", *args],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        self.ready = self.process.stdout.readline()

    def stop(self, signum: int = signal.SIGTERM) -> tuple[int, str]:
        self.process.send_signal(signum)
        _, err = self.process.communicate(timeout=30)
        return self.process.returncode, err


@pytest.fixture
def worker() -> Iterator[type[WorkerProcess]]:
    started: list[WorkerProcess] = []

    class Tracked(WorkerProcess):
        def __init__(self, *args: str, cwd: Path = ROOT) -> None:
            super().__init__(*args, cwd=cwd)
            started.append(self)

    yield Tracked
    for process in started:
        if process.process.poll() is None:
            process.process.kill()
        process.process.communicate(timeout=10)


async def test_a_worker_runs_the_jobs_and_finishes_a_running_one_on_sigterm(
    worker: type[WorkerProcess], make_scheduler: SchedulerFactory, sqlite_url: str, record_file: Path
) -> None:
    running = worker("tests.integration.jobs", "--store", sqlite_url, "--lease", "2", "--concurrency", "4")
    assert running.ready.startswith("backbeat worker "), running.ready
    producer = make_scheduler(sqlite_url, producer_only=True)
    await producer.start_async()
    await producer.schedule_immediate_task("quick", jobs.note, args=[str(record_file), "quick"])
    await producer.schedule_immediate_task("long", jobs.slow, args=[str(record_file), 1.5, "long"])
    await wait_for(lambda: {"run", "start"} <= {r["event"] for r in jobs.read_records(record_file)})
    assert {r["pid"] for r in jobs.read_records(record_file)} == {running.process.pid}

    code, err = running.stop(signal.SIGTERM)
    assert code == 0, err
    events = [(r["event"], r["label"]) for r in jobs.read_records(record_file)]
    assert ("end", "long") in events, "the running job finished before the worker stopped"


async def test_a_worker_uses_the_apps_scheduler_factory_and_declared_tasks(
    worker: type[WorkerProcess], make_scheduler: SchedulerFactory, sqlite_url: str, tmp_path: Path
) -> None:
    (tmp_path / "billing_app.py").write_text(
        textwrap.dedent(
            f"""
            from backbeat import BackgroundTaskScheduler, SchedulerConfig, schedule_task

            @schedule_task(interval=3600, id="hourly-invoices", tags=("billing",))
            async def invoices() -> None:
                pass

            def make_scheduler() -> BackgroundTaskScheduler:
                return BackgroundTaskScheduler(store={sqlite_url!r}, config=SchedulerConfig(lease_seconds=2))
            """
        )
    )
    running = worker("billing_app:make_scheduler", "--concurrency", "3", cwd=tmp_path)
    assert running.ready.startswith("backbeat worker "), running.ready
    reader = make_scheduler(sqlite_url, producer_only=True)
    info = await reader.get_task_info("hourly-invoices")
    assert info is not None and info.tags == ("billing",)
    code, err = running.stop(signal.SIGINT)
    assert code == 0, err
    assert "provides its own scheduler: --concurrency ignored" in err


async def test_a_producer_only_worker_runs_nothing(
    worker: type[WorkerProcess], make_scheduler: SchedulerFactory, sqlite_url: str, record_file: Path
) -> None:
    running = worker("tests.integration.jobs", "--store", sqlite_url, "--producer-only")
    assert running.ready.startswith("backbeat producer "), running.ready
    producer = make_scheduler(sqlite_url, producer_only=True)
    await producer.schedule_immediate_task("quick", jobs.note, args=[str(record_file)])
    time.sleep(1.0)  # noqa: ASYNC251 - nothing of this loop's must run meanwhile
    assert jobs.read_records(record_file) == []
    assert running.stop()[0] == 0


@pytest.mark.parametrize(
    ("app", "message"),
    [
        ("no_such_module_here", "error: cannot import 'no_such_module_here'"),
        ("tests.integration.jobs:nothing", "error: tests.integration.jobs has no attribute 'nothing'"),
        ("tests.integration.jobs:note", "error: APP 'tests.integration.jobs:note' raised TypeError("),
        ("tests.integration.jobs:os", "error: APP 'tests.integration.jobs:os' is a module: name a"),
    ],
)
def test_a_wrong_app_is_a_one_line_error(worker: type[WorkerProcess], app: str, message: str) -> None:
    failed = worker(app, "--store", "memory://")
    failed.process.wait(30)
    err = failed.process.stderr.read() if failed.process.stderr else ""
    assert failed.process.returncode == 2
    assert message in err and "Traceback" not in err, err
