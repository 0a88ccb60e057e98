"""Integration fixtures: a fresh store of each kind, by URL; the session's Redis Cluster."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from tests.integration.test_redis_store import delete_keys
from tests.postgresql_server import drop_prefixes, fresh_prefix, usable_postgres_url
from tests.redis_cluster import RedisCluster, session_cluster
from tests.redis_server import usable_redis_url

SERVER_STORES = [
    pytest.param("redis", marks=pytest.mark.redis),
    pytest.param("postgresql", marks=pytest.mark.postgresql),
]


@pytest.fixture(params=[pytest.param("sqlite", marks=pytest.mark.sqlite), *SERVER_STORES])
async def store_url(request: pytest.FixtureRequest, sqlite_url: str) -> AsyncIterator[str]:
    """A fresh store: a SQLite file, or a new key or table prefix on the local Redis or
    PostgreSQL server (its keys or tables dropped after the test). A module narrows the kinds
    with ``pytest.mark.parametrize("store_url", SERVER_STORES, indirect=True)``."""
    if request.param == "sqlite":
        yield sqlite_url
    elif request.param == "redis":
        base, prefix = usable_redis_url(), f"store-{uuid.uuid4().hex[:10]}"
        yield f"{base}?prefix={prefix}"
        await delete_keys(base, prefix)
    else:
        base, prefix = usable_postgres_url(), fresh_prefix()
        yield f"{base}?prefix={prefix}"
        # off the event loop: a scheduler of the test may still be finishing a transaction on
        # these tables, which DROP TABLE waits for
        await asyncio.to_thread(drop_prefixes, [(base, prefix)])


@pytest.fixture
def cluster() -> RedisCluster:
    """The session's Redis Cluster (the test is skipped if none can be started)."""
    try:
        return session_cluster()
    except (RuntimeError, OSError) as exc:
        pytest.skip(f"no Redis Cluster could be started: {exc}")
