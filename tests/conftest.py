"""Fixtures shared by every test directory (see ``tests/scheduling.py`` and ``tests/redis_server.py``)."""

from __future__ import annotations

from tests.redis_server import private_redis
from tests.scheduling import make_scheduler, record_file, sqlite_url, workers

__all__ = ["make_scheduler", "private_redis", "record_file", "sqlite_url", "workers"]
