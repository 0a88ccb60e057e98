"""Chaos fixtures: one store shared by several processes, on a SQLite file or a private Redis."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.redis_server import RedisServerHandle, start_private_redis

STORES = [pytest.param("sqlite", marks=pytest.mark.sqlite), pytest.param("redis", marks=pytest.mark.redis)]


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServerHandle]:
    """A redis-server of this test's own (append-only, fsync always), which it may kill and restart."""
    server = start_private_redis(tmp_path, appendonly=True)
    yield server
    server.stop()


@pytest.fixture(params=STORES)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of a fresh store that worker subprocesses share: a SQLite file or a private Redis."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'backbeat.db'}"
    server: RedisServerHandle = request.getfixturevalue("private_redis")
    return server.url
