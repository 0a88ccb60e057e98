"""The job that multi-host scenarios schedule: it records its start and its end (with how it
ended) as JSON lines in a shared file, naming the host (``BACKBEAT_TEST_HOST``) it ran on."""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any

from backbeat import current_run


def record(path: str, event: str, label: str, **fields: Any) -> None:
    """Append one record of the run in progress; ``t`` is the OS wall clock (never skewed)."""
    run = current_run()
    line = json.dumps(
        {
            "event": event,
            "run_id": run.run_id,
            "task_id": run.task_id,
            "attempt": run.attempt,
            "pid": os.getpid(),
            "host": os.environ.get("BACKBEAT_TEST_HOST", ""),
            "owner": run.owner,
            "fencing_token": getattr(run, "fencing_token", None),
            "label": label,
            "t": time.time(),
            **fields,
        }
    )
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


async def work(path: str, seconds: float, label: str) -> None:
    """Record a start, sleep ``seconds``, record an end whose ``outcome`` is ``success``,
    ``cancelled`` (the engine cancelled the run, e.g. when fenced off) or ``error``."""
    record(path, "start", label)
    outcome = "error"
    try:
        await asyncio.sleep(seconds)
        outcome = "success"
    except asyncio.CancelledError:
        outcome = "cancelled"
        raise
    finally:
        record(path, "end", label, outcome=outcome)
