"""One backend per store kind: how the contract suite opens stores and tampers with records.

To plug in a store, fill in its class below (``open_store``, ``corrupt``, ``raw``,
``close``); nothing else in the suite knows which store it runs on.

Leases count by the store's clock (see :mod:`backbeat.abc`): the memory and SQLite stores get a
fake lease clock that :meth:`Backend.pass_time` moves; server stores use their real clock, so
tests wait (keep their leases short: :data:`~tests.contract.helpers.SHORT`).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import sqlite3
import subprocess
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest

from backbeat.abc import Store
from backbeat.stores import MemoryStore, SQLiteStore
from tests.contract.helpers import STORE_T0
from tests.fakes import FakeClock

KINDS = ("memory", "sqlite", "redis", "rediscluster", "postgresql", "mongodb")


def _store_class(module: str, name: str) -> Any:
    """A store class, or skip the test while the store is not written yet."""
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        pytest.skip(f"{name} not implemented yet")


class Backend:
    """Opens stores of one kind on one isolated data set, and writes behind their back."""

    lease_clock: FakeClock | None = None
    """The stores' lease clock when it is injectable (memory, SQLite); else the server's own."""
    tolerance = timedelta(0)
    """How far the store's clock may be from :meth:`store_time` (rounding, another host)."""
    claims_in_due_order = True
    """A claim takes the earliest due items of the whole store first (not so for a sharded
    store: the earliest of each shard, shards by turns)."""
    prunes_a_batch_per_shard = False
    """An age prune removes about ``PRUNE_BATCH`` from each shard (a sharded store), not from
    the whole store."""
    history_keyed_by_id = False
    """History entries are told apart by their id alone, so an id recorded again with another
    end keeps the first (memory, MongoDB); the SQL and Redis stores tell them apart by (task,
    end, id), the key their insert or member finds a repeat by without a look-up of its own in
    a completion (SQLite's migration 7 dropped such a probe: it cost about as much as the rest
    of the history in a fire), and keep both."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.stores: list[Store] = []

    def store_time(self) -> datetime:
        """The store's clock now: its fake lease clock, or this host's clock for a server."""
        return self.lease_clock.now if self.lease_clock is not None else datetime.now(UTC)

    async def pass_time(self, delta: timedelta) -> None:
        """Let ``delta`` pass by the store's clock (a fake one moves, a server's is waited for)."""
        if self.lease_clock is not None:
            self.lease_clock.advance(delta.total_seconds())
        else:
            await asyncio.sleep(delta.total_seconds() + 0.05)

    def assert_between(self, value: datetime | None, low: datetime, high: datetime) -> None:
        """``low <= value <= high`` within :attr:`tolerance` (bounds read around a store call)."""
        assert value is not None
        assert low - self.tolerance <= value <= high + self.tolerance, (value, low, high)

    async def open_store(self) -> Store:
        """An opened store on this backend's data; each call is another instance (another
        process's view), except for the memory store, which only one process can see."""
        raise NotImplementedError

    async def corrupt(self, task_id: str, raw: str) -> None:
        """Replace a stored task's record by ``raw``, as a bug or a disk error would."""
        raise NotImplementedError

    async def raw(self, task_id: str) -> str | None:
        """A task's record as stored, or ``None`` when it is gone."""
        raise NotImplementedError

    async def close(self) -> None:
        for store in self.stores:
            await store.close()


class MemoryBackend(Backend):
    history_keyed_by_id = True

    def __init__(self, tmp_path: Path) -> None:
        super().__init__(tmp_path)
        self.lease_clock = FakeClock(STORE_T0)
        self.shared = MemoryStore(lease_clock=self.lease_clock)

    async def open_store(self) -> Store:
        return self.shared

    async def corrupt(self, task_id: str, raw: str) -> None:
        pytest.skip("the memory store keeps Task objects, never encoded records: none can be corrupt")

    async def raw(self, task_id: str) -> str | None:
        task = await self.shared.get(task_id)
        return None if task is None else task.to_bytes().decode()


class SQLiteBackend(Backend):
    def __init__(self, tmp_path: Path) -> None:
        super().__init__(tmp_path)
        self.path = tmp_path / "contract.db"
        self.lease_clock = self.clock = FakeClock(STORE_T0)

    async def open_store(self) -> Store:
        store = SQLiteStore(self.path, lease_clock=self.clock)
        await store.open()
        self.stores.append(store)
        return store

    async def corrupt(self, task_id: str, raw: str) -> None:
        with contextlib.closing(sqlite3.connect(self.path)) as db, db:
            db.execute("UPDATE tasks SET doc = ? WHERE id = ?", (raw, task_id))

    async def raw(self, task_id: str) -> str | None:
        with contextlib.closing(sqlite3.connect(self.path)) as db:
            row = db.execute("SELECT doc FROM tasks WHERE id = ?", (task_id,)).fetchone()
        return None if row is None else str(row[0])


class RedisBackend(Backend):
    tolerance = timedelta(milliseconds=1)

    def __init__(self, tmp_path: Path) -> None:
        super().__init__(tmp_path)
        self.store_class = _store_class("backbeat.stores.redis", "RedisStore")
        import redis

        from tests.redis_server import usable_redis_url

        self.url = usable_redis_url()
        self.prefix = f"contract-{uuid.uuid4().hex[:12]}"
        self.client = redis.Redis.from_url(self.url)

    async def open_store(self) -> Store:
        store: Store = self.store_class(self.url, prefix=self.prefix)
        await store.open()
        self.stores.append(store)
        return store

    async def corrupt(self, task_id: str, raw: str) -> None:
        self.client.hset(f"{{{self.prefix}}}:tasks", task_id, raw)

    async def raw(self, task_id: str) -> str | None:
        # the synchronous client: its reply, not an awaitable (redis types both under one name)
        found = cast("bytes | None", self.client.hget(f"{{{self.prefix}}}:tasks", task_id))
        return None if found is None else found.decode()

    async def close(self) -> None:
        await super().close()
        keys = list(self.client.scan_iter(match=f"{{{self.prefix}}}*", count=1000))
        if keys:
            self.client.delete(*keys)
        self.client.close()


class RedisClusterBackend(Backend):
    """A fresh prefix per test, sharded over 6 shards, on the session's 3-master Redis Cluster."""

    tolerance = timedelta(milliseconds=5)  # three masters' clocks: the same host's here
    claims_in_due_order = False
    prunes_a_batch_per_shard = True
    shards = 6

    def __init__(self, tmp_path: Path) -> None:
        super().__init__(tmp_path)
        self.store_class = _store_class("backbeat.stores.redis.cluster", "ShardedRedisStore")
        import redis.cluster

        from tests.redis_cluster import session_cluster

        try:
            self.cluster = session_cluster()
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
            pytest.skip(f"no Redis Cluster could be started: {exc}")
        self.prefix = f"contract-{uuid.uuid4().hex[:12]}"
        host, port = self.cluster.startup_nodes[0]
        self.client = redis.cluster.RedisCluster(host=host, port=port)

    async def open_store(self) -> Store:
        store: Store = self.store_class(self.cluster.url(self.prefix, shards=self.shards))
        await store.open()
        self.stores.append(store)
        return store

    def _tasks_key(self, task_id: str) -> str:
        from backbeat.stores.redis.sharding import shard_of, shard_prefix

        return f"{{{shard_prefix(self.prefix, shard_of(task_id, self.shards), self.shards)}}}:tasks"

    async def corrupt(self, task_id: str, raw: str) -> None:
        self.client.hset(self._tasks_key(task_id), task_id, raw)

    async def raw(self, task_id: str) -> str | None:
        found = cast("bytes | None", self.client.hget(self._tasks_key(task_id), task_id))
        return None if found is None else found.decode()

    async def close(self) -> None:
        await super().close()
        from backbeat.stores.redis.sharding import shards_key

        self.client.delete(shards_key(self.prefix))
        for shard in range(self.shards):
            keys = self._keys(shard)
            if keys:
                self.client.delete(*(key.decode() for key in keys))
        self.client.close()

    def _keys(self, shard: int) -> list[bytes]:
        from backbeat.stores.redis.sharding import shard_prefix

        pattern = f"{{{shard_prefix(self.prefix, shard, self.shards)}}}*"
        return list(self.client.scan_iter(match=pattern, count=1000, target_nodes=self.client.PRIMARIES))


class PostgreSQLBackend(Backend):
    """Tables of a fresh prefix per test on ``BACKBEAT_POSTGRESQL_URL`` (default: the local
    server), dropped after."""

    tolerance = timedelta(milliseconds=1)

    def __init__(self, tmp_path: Path) -> None:
        super().__init__(tmp_path)
        self.store_class = _store_class("backbeat.stores.postgresql", "PostgreSQLStore")
        self.url = os.environ.get("BACKBEAT_POSTGRESQL_URL", "postgresql://postgres@127.0.0.1:5432/test")
        self.prefix = f"bb_{uuid.uuid4().hex[:10]}"

    async def open_store(self) -> Store:
        store: Store = self.store_class(self.url, table_prefix=self.prefix)
        await store.open()
        self.stores.append(store)
        return store

    async def _sql(self, sql: str, *args: Any) -> Any:
        import asyncpg

        conn = await asyncpg.connect(self.url)
        try:
            return await conn.fetchval(sql, *args)
        finally:
            await conn.close()

    async def corrupt(self, task_id: str, raw: str) -> None:
        await self._sql(f"UPDATE {self.prefix}_tasks SET doc = $1 WHERE id = $2", raw, task_id)

    async def raw(self, task_id: str) -> str | None:
        found = await self._sql(f"SELECT doc FROM {self.prefix}_tasks WHERE id = $1", task_id)
        return None if found is None else str(found)

    async def close(self) -> None:
        await super().close()
        if self.stores:
            tables = ", ".join(
                f"{self.prefix}_{t}" for t in ("task_tags", "tasks", "runs", "dead_letters", "state", "meta")
            )
            await self._sql(f"DROP TABLE IF EXISTS {tables} CASCADE")


class MongoBackend(Backend):
    """A fresh database per test on the server named by ``BACKBEAT_MONGODB_URL``, dropped after."""

    tolerance = timedelta(milliseconds=50)
    """``$$NOW`` has millisecond precision, and the server may be another host."""
    history_keyed_by_id = True

    def __init__(self, tmp_path: Path) -> None:
        super().__init__(tmp_path)
        self.store_class = _store_class("backbeat.stores.mongodb", "MongoStore")
        url = os.environ.get("BACKBEAT_MONGODB_URL")
        if not url:
            pytest.skip("BACKBEAT_MONGODB_URL is not set: no MongoDB server to test against")
        import pymongo

        self.url = url
        suffix = uuid.uuid4().hex[:12]
        self.database = f"backbeat_contract_{suffix}"
        self.collection = f"jobs_{suffix}"
        self.client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(url)

    async def open_store(self) -> Store:
        store: Store = self.store_class(self.url, database=self.database, collection=self.collection)
        await store.open()
        self.stores.append(store)
        return store

    async def corrupt(self, task_id: str, raw: str) -> None:
        tasks = self.client[self.database][self.collection]
        tasks.update_one({"_id": task_id}, {"$set": {"doc": raw}})

    async def raw(self, task_id: str) -> str | None:
        found = self.client[self.database][self.collection].find_one({"_id": task_id})
        return None if found is None else str(found["doc"])

    async def close(self) -> None:
        await super().close()
        self.client.drop_database(self.database)
        self.client.close()


BACKENDS: dict[str, type[Backend]] = {
    "memory": MemoryBackend,
    "sqlite": SQLiteBackend,
    "redis": RedisBackend,
    "rediscluster": RedisClusterBackend,
    "postgresql": PostgreSQLBackend,
    "mongodb": MongoBackend,
}


@contextlib.asynccontextmanager
async def make_backend(kind: str, tmp_path: Path) -> AsyncIterator[Backend]:
    """A backend of ``kind`` on fresh data (skips the test when the store is not available)."""
    backend = BACKENDS[kind](tmp_path)
    try:
        yield backend
    finally:
        await backend.close()


@contextlib.asynccontextmanager
async def make_store(kind: str, tmp_path: Path) -> AsyncIterator[Store]:
    """One opened store of ``kind`` on fresh data."""
    async with make_backend(kind, tmp_path) as backend:
        yield await backend.open_store()
