"""Integration fixtures: a fresh store of each kind, by URL; a Redis store under a fresh ``prefix``
on the shared server (``store``); the session's Redis Cluster; a redis-server of a test's own
(``server``, its ``admin`` client, a ``replica`` of it)."""

from __future__ import annotations

import asyncio
import gc
import time
import uuid
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis

from backbeat.stores.redis import RedisStore
from tests.postgresql_server import drop_prefixes, fresh_prefix, usable_postgres_url
from tests.redis_cluster import RedisCluster, session_cluster
from tests.redis_server import RedisServerHandle, delete_keys, private_redis_server, usable_redis_url

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
def prefix() -> str:
    """A fresh key prefix on the shared Redis server."""
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def store(prefix: str) -> AsyncIterator[RedisStore]:
    """An open Redis store on the shared server (``usable_redis_url()``) under ``prefix``; closed
    and its keys deleted after the test. (A module that tests another store, or one on a server
    of its own, defines a ``store`` of its own.)"""
    store = RedisStore(usable_redis_url(), prefix=prefix)
    await store.open()
    yield store
    await store.close()
    await delete_keys(usable_redis_url(), prefix)


@pytest.fixture
def cluster() -> RedisCluster:
    """The session's Redis Cluster (the test is skipped if none can be started)."""
    try:
        return session_cluster()
    except (RuntimeError, OSError) as exc:
        pytest.skip(f"no Redis Cluster could be started: {exc}")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServerHandle]:
    """A redis-server of this test's own, without persistence, which it may pause or stop."""
    with private_redis_server(tmp_path / "redis", appendonly=False) as handle:
        yield handle


@pytest.fixture
def admin(server: RedisServerHandle) -> Iterator[redis.Redis]:
    """A client of ``server`` for the test's own reads."""
    client = redis.Redis.from_url(server.url)
    yield client
    client.close()


@pytest.fixture
def replica(server: RedisServerHandle, tmp_path: Path) -> Iterator[RedisServerHandle]:
    """A replica of ``server``, online (so ``WAIT 1`` is answered at once)."""
    replica_of = ["--replicaof", "127.0.0.1", str(server.port)]
    with (
        private_redis_server(tmp_path / "replica", appendonly=False, extra_args=replica_of) as handle,
        redis.Redis.from_url(server.url) as master,
    ):
        for _ in range(200):
            if master.info("replication").get("connected_slaves", 0) >= 1:
                break
            time.sleep(0.05)
        else:
            raise RuntimeError("the replica did not come online")
        yield handle


@pytest.fixture
def ended_loops() -> Iterator[None]:
    """For a test that ends an event loop with connections open: after it, they are collected
    at once, each warning "loop is closed" (closing it needs that loop), not in a later test.
    Such a test also ignores ResourceWarning (``pytest.mark.filterwarnings("ignore::ResourceWarning")``):
    what the store drops of the ended loop in the next one may be collected during the test."""
    yield
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
