"""Counting instructions with callgrind: a ``redis-server`` run under it, and its output files.

``valgrind --tool=callgrind redis-server --port P``, process id ``PID``: :func:`counted` zeroes its
counters (``callgrind_control -z``) before the block and dumps them (``-d``) after it, so that the
dump holds the block's instructions (the dump's own cost cancels out between the runs at ``N``
and ``2N``). :func:`callgrind_redis` starts such a server of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.redis_server import answers, free_port


def control(action: str, pid: int) -> None:
    """``callgrind_control -z`` (zero) or ``-d`` (dump) the server's counters."""
    subprocess.run(["callgrind_control", action, str(pid)], check=True, capture_output=True)


@asynccontextmanager
async def counted(pid: int) -> AsyncIterator[None]:
    """The server's counters zeroed before the block and dumped after it (not if it raises)."""
    await asyncio.to_thread(control, "-z", pid)
    yield
    await asyncio.to_thread(control, "-d", pid)


def total(path: Path) -> int:
    """The instructions a callgrind output file counts (its ``summary:`` line)."""
    found = re.search(rb"^summary: (\d+)$", path.read_bytes(), re.MULTILINE)
    if found is None:
        raise ValueError(f"{path} has no 'summary:' line: not a whole callgrind output file")
    return int(found[1])


def inclusive(path: Path, function: str) -> int:
    """The instructions of ``function`` and everything it called, by ``callgrind_annotate``
    (0 if it never ran)."""
    annotated = subprocess.run(
        ["callgrind_annotate", "--inclusive=yes", "--threshold=100", str(path)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    found = re.search(rf"^\s*([\d,]+) .*:{re.escape(function)} ", annotated, re.MULTILINE)
    return int(found[1].replace(",", "")) if found else 0


@dataclass
class CallgrindServer:
    """A ``redis-server`` under callgrind; :meth:`dump` writes its counts since the last zero."""

    directory: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    dumps: int = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, timeout: float = 120.0) -> None:
        self.process = subprocess.Popen(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={self.directory / 'server.out'}",
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.directory),
                "--save",
                "",
                "--appendonly",
                "no",
                # a completion's script runs for seconds under callgrind: past the default 5 s
                # the server answers other calls BUSY, and their retries would be counted; an hour
                "--busy-reply-threshold",
                "3600000",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while not answers(self.url, timeout=1.0):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server under callgrind on port {self.port} did not start")
            time.sleep(0.2)

    def zero(self) -> None:
        control("-z", self.pid)

    def dump(self) -> Path:
        """The server's counts since :meth:`zero` (or its start) in a new file."""
        control("-d", self.pid)
        self.dumps += 1
        return self.directory / f"server.out.{self.dumps}"

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(60)


@contextlib.contextmanager
def callgrind_redis(directory: Path) -> Iterator[CallgrindServer]:
    """A private ``redis-server`` under callgrind (no persistence, its files in ``directory``)
    for the block; stopped after it."""
    server = CallgrindServer(directory)
    try:
        server.start()
        yield server
    finally:
        server.stop()
