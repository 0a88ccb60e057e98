"""Chaos fixtures: one store shared by several processes, on a SQLite file, a private Redis, a
fresh prefix on the session's Redis Cluster, or fresh tables on a PostgreSQL server."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.postgresql_server import (
    PostgresNotInstalledError,
    PostgresServerHandle,
    drop_prefixes,
    fresh_prefix,
    start_private_postgres,
    usable_postgres_url,
)
from tests.redis_cluster import session_cluster
from tests.redis_server import RedisServerHandle

STORES = [
    pytest.param("sqlite", marks=pytest.mark.sqlite),
    pytest.param("redis", marks=pytest.mark.redis),
    pytest.param("rediscluster", marks=pytest.mark.rediscluster),
    pytest.param("postgresql", marks=pytest.mark.postgresql),
]


@pytest.fixture(autouse=True)
def postgres_prefixes() -> Iterator[list[tuple[str, str]]]:
    """(base URL, table prefix) pairs whose tables are dropped after the test.

    Autouse, so it is set up before and torn down after every other fixture of the test: the
    tables go only once the test's schedulers are stopped and its workers killed."""
    made: list[tuple[str, str]] = []
    yield made
    drop_prefixes(made)


@pytest.fixture
def private_postgres() -> Iterator[PostgresServerHandle]:
    """A PostgreSQL cluster of this test's own, which it may crash and start again."""
    try:
        server = start_private_postgres()
    except PostgresNotInstalledError as exc:
        pytest.skip(f"cannot start a private PostgreSQL: {exc}")
    yield server
    server.cleanup()


@pytest.fixture(params=STORES)
def store_url(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_prefixes: list[tuple[str, str]]
) -> str:
    """The URL of a fresh store that worker subprocesses share: a SQLite file, a private Redis,
    a fresh prefix (6 shards) on the session's Redis Cluster, or tables of a fresh prefix on the
    PostgreSQL server (``BACKBEAT_POSTGRESQL_URL``)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'backbeat.db'}"
    if request.param == "rediscluster":
        return session_cluster().url(f"chaos-{uuid.uuid4().hex[:10]}", shards=6)
    if request.param == "postgresql":
        base = usable_postgres_url()  # skips the test when no server answers
        prefix = fresh_prefix()
        postgres_prefixes.append((base, prefix))
        return f"{base}{'&' if '?' in base else '?'}prefix={prefix}"
    server: RedisServerHandle = request.getfixturevalue("private_redis")
    return server.url
