"""APScheduler 3 job stores on the real servers, filled by APScheduler's own ``add_job``, each with
the backbeat store its jobs migrate into; every key, table, schema and database is the test's own."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
import sqlalchemy as sa
from apscheduler.job import Job
from apscheduler.jobstores.base import BaseJobStore
from apscheduler.jobstores.redis import RedisJobStore
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler

KINDS = ("sqlite", "redis", "postgresql", "mongodb")


@dataclass
class ApsStore:
    """One APScheduler job store, how the CLI names it, and the backbeat store to migrate into."""

    kind: str
    make_jobstore: Callable[[], BaseJobStore]
    source: list[str]
    """The CLI's SOURCE argument and its options (custom keys, table, collection)."""
    target: str
    raw: RawAccess
    cleanups: list[Callable[[], None]] = field(default_factory=list)

    def fill(self, add: Callable[[BackgroundScheduler], object]) -> list[Job]:
        """Run ``add(scheduler)`` on a paused APScheduler scheduler (so next run times are
        computed and stored) over this store; returns the jobs as APScheduler reads them back."""
        jobstore = self.make_jobstore()
        scheduler = BackgroundScheduler(jobstores={"default": jobstore}, timezone="Europe/Paris")
        scheduler.start(paused=True)
        try:
            add(scheduler)
            return list(scheduler.get_jobs())
        finally:
            scheduler.shutdown(wait=False)
            # APScheduler 3's thread reads its stores once more after shutdown() closed them
            # (a new connection, left open): closed again now that the thread has ended
            jobstore.shutdown()


@dataclass
class RawAccess:
    """The store's records as bytes, read and written without APScheduler."""

    states: Callable[[], dict[str, bytes]]
    put: Callable[[str, bytes], None]


def make(kind: str, tmp_path: Path) -> ApsStore:
    if kind == "sqlite":
        return _sqlite(tmp_path)
    if kind == "redis":
        return _redis()
    if kind == "postgresql":
        return _postgresql()
    return _mongodb(tmp_path)


def _sql_access(url: str, table: sa.TableClause) -> tuple[RawAccess, Callable[[], None]]:
    """The raw access to ``table``, and what closes its connections."""
    engine = sa.create_engine(url)

    def states() -> dict[str, bytes]:
        with engine.connect() as conn:
            return {i: bytes(s) for i, s in conn.execute(sa.select(table.c.id, table.c.job_state))}

    def put(job_id: str, data: bytes) -> None:
        with engine.begin() as conn:
            conn.execute(sa.insert(table).values(id=job_id, next_run_time=0.0, job_state=data))

    return RawAccess(states, put), engine.dispose


def _table(name: str, schema: str | None = None) -> sa.TableClause:
    return sa.table(name, sa.column("id"), sa.column("next_run_time"), sa.column("job_state"), schema=schema)


def _sqlite(tmp_path: Path) -> ApsStore:
    url = f"sqlite:///{tmp_path / 'apscheduler.sqlite'}"
    raw, close_raw = _sql_access(url, _table("legacy_jobs"))
    return ApsStore(
        "sqlite",
        lambda: SQLAlchemyJobStore(url=url, tablename="legacy_jobs"),
        [url, "--table", "legacy_jobs"],
        f"sqlite:///{tmp_path / 'backbeat.db'}",
        raw,
        [close_raw],
    )


def _redis() -> ApsStore:
    from tests.postgresql_server import in_thread
    from tests.redis_server import delete_keys, usable_redis_url

    url = usable_redis_url()
    parts, name = urlsplit(url), f"aps-{os.urandom(4).hex()}"
    keys = {"jobs_key": f"{name}.jobs", "run_times_key": f"{name}.run_times"}
    client = redis.Redis.from_url(url)
    connect = {"host": parts.hostname, "port": parts.port or 6379, "db": int(parts.path.strip("/") or 0)}

    def states() -> dict[str, bytes]:
        found: dict[bytes, bytes] = client.hgetall(keys["jobs_key"])  # type: ignore[assignment]
        return {key.decode(): value for key, value in found.items()}

    def put(job_id: str, data: bytes) -> None:
        client.hset(keys["jobs_key"], job_id, data)

    def delete() -> None:
        client.delete(*keys.values())

    store = ApsStore(
        "redis",
        lambda: RedisJobStore(**keys, **connect),
        [url, "--jobs-key", keys["jobs_key"], "--run-times-key", keys["run_times_key"]],
        f"{url}?prefix={name}-bb",
        RawAccess(states, put),
    )
    store.cleanups += [
        delete,
        lambda: in_thread(lambda: delete_keys(url, f"{name}-bb")),
        client.close,
    ]
    return store


def _postgresql() -> ApsStore:
    from tests.postgresql_server import drop_prefixes, fresh_prefix, usable_postgres_url

    url = usable_postgres_url()
    schema, prefix = f"aps_{os.urandom(4).hex()}", fresh_prefix()
    sync_url = "postgresql+psycopg" + url[url.index("://") :]
    engine = sa.create_engine(sync_url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    raw, close_raw = _sql_access(sync_url, _table("apscheduler_jobs", schema))
    store = ApsStore(
        "postgresql",
        lambda: SQLAlchemyJobStore(url=sync_url, tableschema=schema),
        [url, "--table", f"{schema}.apscheduler_jobs"],  # the plain URL: read with psycopg
        f"{url}?prefix={prefix}",
        raw,
        [close_raw],
    )

    def drop() -> None:
        with engine.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        engine.dispose()

    store.cleanups += [drop, lambda: drop_prefixes([(url, prefix)])]
    return store


def _mongodb(tmp_path: Path) -> ApsStore:
    url = os.environ.get("BACKBEAT_MONGODB_URL")
    if not url:
        pytest.skip("MongoDB tests run when BACKBEAT_MONGODB_URL is set")
    import pymongo
    from apscheduler.jobstores.mongodb import MongoDBJobStore
    from bson import Binary

    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(url)
    database = f"aps_{os.urandom(4).hex()}"
    jobs = client[database]["legacy"]
    parts = urlsplit(url)
    source_url = parts._replace(path=f"/{database}").geturl()

    def put(job_id: str, data: bytes) -> None:
        jobs.insert_one({"_id": job_id, "next_run_time": 0.0, "job_state": Binary(data)})

    store = ApsStore(
        "mongodb",
        lambda: MongoDBJobStore(database=database, collection="legacy", client=client),
        [source_url, "--collection", "legacy"],
        f"sqlite:///{tmp_path / 'backbeat.db'}",
        RawAccess(lambda: {str(d["_id"]): bytes(d["job_state"]) for d in jobs.find()}, put),
    )
    store.cleanups += [lambda: client.drop_database(database), client.close]
    return store


@pytest.fixture(params=[pytest.param(kind, marks=getattr(pytest.mark, kind)) for kind in KINDS])
def aps_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ApsStore]:
    store = make(request.param, tmp_path)
    yield store
    for cleanup in reversed(store.cleanups):
        cleanup()
