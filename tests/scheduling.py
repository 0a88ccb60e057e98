"""Scheduler test helpers and fixtures: SQLite files, schedulers that clean up, worker subprocesses."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from backbeat import BackgroundTaskScheduler, DeadLetter, SchedulerConfig

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'backbeat.db'}"


@pytest.fixture
def record_file(tmp_path: Path) -> Path:
    return tmp_path / "record.jsonl"


SchedulerFactory = Callable[..., BackgroundTaskScheduler]


@pytest.fixture
async def make_scheduler() -> AsyncIterator[SchedulerFactory]:
    """Build schedulers (started by the test) that are stopped at the end of the test."""
    made: list[BackgroundTaskScheduler] = []

    def factory(store: Any, **kwargs: Any) -> BackgroundTaskScheduler:
        config = kwargs.pop("config", None) or SchedulerConfig(
            lease_seconds=kwargs.pop("lease_seconds", 2.0),
            poll_interval=0.2,
            shutdown_timeout=kwargs.pop("shutdown_timeout", 5.0),
        )
        scheduler = BackgroundTaskScheduler(store=store, config=config, **kwargs)
        made.append(scheduler)
        return scheduler

    yield factory
    await asyncio.gather(*(s.stop_async(timeout=1.0) for s in made), return_exceptions=True)


class Worker:
    """A scheduler subprocess (``tests/integration/worker.py``), its stderr (log warnings,
    tracebacks) appended to the file ``log``: a pipe nobody read could fill and block a worker
    that logs a lot, and its output would be lost when the test fails."""

    def __init__(self, url: str, *args: str, log: Path) -> None:
        env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
        self.log = log
        with log.open("a") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tests.integration.worker", url, *args],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
            )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if line.strip() != "ready":
            self.process.kill()
            self.process.wait(10)
            raise RuntimeError(f"worker did not start: {line!r} {self.errors()}")

    def errors(self) -> str:
        """What it wrote on stderr so far."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def kill(self) -> None:
        """SIGKILL it (unless it ended), wait for it, close its stdout."""
        self.process.kill()
        self.process.wait(10)
        if self.process.stdout is not None:
            self.process.stdout.close()

    def stop(self, timeout: float = 20) -> int:
        self.process.terminate()
        return self.process.wait(timeout)


STARTED_WORKERS = pytest.StashKey[list[Worker]]()
"""The workers a test started, whose logs ``tests/conftest.py`` adds to the report of a failure."""


@pytest.fixture
def workers(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    """Start worker subprocesses (killed after the test), each logging to ``log`` or else to
    ``worker-<n>.log`` in ``tmp_path``; a failed test's report shows their logs."""
    started = request.node.stash.setdefault(STARTED_WORKERS, [])

    def start(url: str, *args: str, log: Path | None = None) -> Worker:
        worker = Worker(url, *args, log=log or tmp_path / f"worker-{len(started)}.log")
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.kill()  # if still running; closes its stdout either way


def worker_log_sections(workers: list[Worker], lines: int = 200) -> list[tuple[str, str]]:
    """(title, text) of each worker's log, the last ``lines`` lines of a long one."""
    sections: list[tuple[str, str]] = []
    for n, worker in enumerate(workers):
        text = worker.errors().splitlines()
        title = f"worker {n} (pid {worker.process.pid}) stderr, {worker.log}"
        if len(text) > lines:
            title += f": its last {lines} of {len(text)} lines"
        sections.append((title, "\n".join(text[-lines:]) or "(empty)"))
    return sections


async def wait_for(predicate: Callable[[], bool], timeout: float = 10.0, interval: float = 0.05) -> None:
    """Poll ``predicate`` until it holds; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


async def eventually(
    check: Callable[[], Awaitable[bool]], timeout: float = 10.0, interval: float = 0.05
) -> None:
    """Await ``check()`` until it is true; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


async def dead_letters(scheduler: BackgroundTaskScheduler, count: int = 1) -> list[DeadLetter]:
    """The scheduler's dead letters once there are ``count`` of them (within 10 s)."""
    letters: list[DeadLetter] = []

    async def counted() -> bool:
        nonlocal letters
        letters = await scheduler.list_dead_letters()
        return len(letters) == count

    try:
        await eventually(counted)
    except AssertionError:
        raise AssertionError(f"{count} dead letter(s) expected, found {letters}") from None
    return letters
