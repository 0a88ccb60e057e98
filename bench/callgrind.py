"""Counting a ``redis-server`` run under callgrind around the measured part of a bench.

``valgrind --tool=callgrind redis-server --port P``, process id ``PID``: :func:`counted` zeroes its
counters (``callgrind_control -z``) before the block and dumps them (``-d``) after it, so that the
dump holds the block's instructions (the dump's own cost cancels out between the runs at ``N``
and ``2N``).
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


def control(action: str, pid: int) -> None:
    """``callgrind_control -z`` (zero) or ``-d`` (dump) the server's counters."""
    subprocess.run(["callgrind_control", action, str(pid)], check=True, capture_output=True)


@asynccontextmanager
async def counted(pid: int) -> AsyncIterator[None]:
    """The server's counters zeroed before the block and dumped after it (not if it raises)."""
    await asyncio.to_thread(control, "-z", pid)
    yield
    await asyncio.to_thread(control, "-d", pid)
