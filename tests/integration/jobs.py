"""Jobs that tests schedule and worker subprocesses run: each records its runs in a JSON-lines file.

The record file is named by the ``BACKBEAT_TEST_RECORD`` environment variable (or the
``record`` argument); appends of one short line are atomic, so several processes share it.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from backbeat import current_run


def record(path: str | os.PathLike[str], event: str, **fields: Any) -> None:
    run = current_run()
    line = json.dumps(
        {
            "event": event,
            "run_id": run.run_id,
            "task_id": run.task_id,
            "attempt": run.attempt,
            "pid": os.getpid(),
            "owner": run.owner,
            "t": time.time(),
            **fields,
        }
    )
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def read_records(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The records written so far; a last line still being written (no newline yet) is left for
    the next read."""
    file = Path(path)
    if not file.exists():
        return []
    text = file.read_text()
    complete = text[: text.rfind("\n") + 1]
    return [json.loads(line) for line in complete.splitlines() if line.strip()]


async def note_fire_time(path: str) -> None:
    """Record one run with its fire time (``t`` is when it started)."""
    record(path, "run", fire_time=current_run().fire_time.timestamp())


async def note(path: str, label: str = "") -> None:
    """Record one run."""
    record(path, "run", label=label)


async def slow(path: str, seconds: float, label: str = "") -> None:
    """Record a start, work for ``seconds``, record an end; or, cancelled (a timeout, a cancel
    request, an overlap policy's ``cancel_other``, a shutdown that releases it, a fenced run),
    record ``cancelled`` with its time instead of the end, so a reader knows when it stopped."""
    record(path, "start", label=label)
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        record(path, "cancelled", label=label)
        raise
    record(path, "end", label=label)


def sync_note(path: str, label: str = "") -> str:
    """A plain function: runs in a thread; returns the thread's name."""
    import threading

    record(path, "run", label=label, thread=threading.current_thread().name)
    return threading.current_thread().name


def child_pid_then_sleep(path: str, seconds: float) -> None:
    """Runs in a process pool: records its pid, then sleeps (to be cancelled)."""
    child_pid(path)
    time.sleep(seconds)


def child_fails(message: str) -> None:
    """Runs in a process pool: raises ``ValueError(message)``."""
    raise ValueError(message)


def child_exits(code: int) -> None:
    """Runs in a process pool: a command-line entry point reused as a job, ended by ``sys.exit``."""
    sys.exit(code)


def child_pid(path: str) -> int:
    """Runs in a process pool: returns and records its pid (no run context in a child)."""
    pid = os.getpid()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(fd, (json.dumps({"event": "child", "pid": pid}) + "\n").encode())
    os.close(fd)
    return pid


async def fail(path: str) -> None:
    record(path, "fail")
    raise RuntimeError("this job always fails")
