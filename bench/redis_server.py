"""A private ``redis-server`` for the peers bench, so its memory and CPU figures are its own.

The shared server on 6379 serves other users at the same time: their keys move ``used_memory``
and their commands ``used_cpu_*``. A server of our own on a free port sees only the bench.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tests.redis_server import private_redis_server


@contextlib.contextmanager
def private_redis() -> Iterator[str]:
    """Start ``redis-server`` (no persistence) on a free port; yield its URL; stop it after."""
    with (
        tempfile.TemporaryDirectory(prefix="backbeat-bench-redis-") as directory,
        private_redis_server(Path(directory), appendonly=False) as server,
    ):
        yield server.url
