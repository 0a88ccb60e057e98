"""The job that multi-host scenarios schedule: it records its start and its end (with how it
ended) as JSON lines in a shared file, naming the host (``BACKBEAT_TEST_HOST``) it ran on."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from backbeat import current_run
from tests.integration import jobs


def record(path: str, event: str, label: str, **fields: Any) -> None:
    """Append one record of the run in progress, naming its host and fencing token; ``t`` is the
    OS wall clock (never skewed)."""
    run = current_run()
    host = os.environ.get("BACKBEAT_TEST_HOST", "")
    token = getattr(run, "fencing_token", None)
    jobs.record(path, event, host=host, fencing_token=token, label=label, **fields)


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
