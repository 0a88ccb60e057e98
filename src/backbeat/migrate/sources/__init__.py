"""APScheduler 3 job stores, read as (job id, pickled state) pairs: Redis, SQLAlchemy, MongoDB.

Each source is synchronous (the migration calls it in a thread) and reads pages in id order
after a given id, so deleting moved jobs between pages never skips one. Drivers are imported
only for the source a URL names (``pip install 'backbeat[migrate]'``).
"""

from __future__ import annotations

from dataclasses import dataclass

from backbeat.errors import ConfigurationError
from backbeat.migrate.sources.base import Source, StoredJob


@dataclass(frozen=True, slots=True)
class SourceOptions:
    """Where in the store APScheduler kept its jobs (its job store's own defaults)."""

    jobs_key: str | None = None
    run_times_key: str | None = None
    table: str | None = None
    collection: str | None = None


def open_source(url: str, options: SourceOptions = SourceOptions()) -> Source:
    """The source a URL names: ``redis://``/``rediss://``/``unix://`` (RedisJobStore),
    ``mongodb://``/``mongodb+srv://`` (MongoDBJobStore: the database in the URL's path, default
    ``apscheduler``) or any SQLAlchemy URL (SQLAlchemyJobStore: ``sqlite:///jobs.sqlite``,
    ``postgresql://...``, which is read with psycopg 3).

    Raises:
        ConfigurationError: an option that does not fit the store, or a missing driver.
        StoreUnavailableError: the store cannot be reached or holds no such key/table.
    """
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    kind = {"redis": "redis", "rediss": "redis", "unix": "redis"}.get(scheme)
    kind = kind or {"mongodb": "mongodb", "mongodb+srv": "mongodb"}.get(scheme)
    kind = kind or ("sqlalchemy" if scheme else None)
    if kind is None:
        raise ConfigurationError(f"{url!r} is not a job store URL (redis://, mongodb://, sqlite:///, ...)")
    misplaced = {
        "--jobs-key": options.jobs_key and kind != "redis",
        "--run-times-key": options.run_times_key and kind != "redis",
        "--table": options.table and kind != "sqlalchemy",
        "--collection": options.collection and kind != "mongodb",
    }
    for flag, wrong in misplaced.items():
        if wrong:
            raise ConfigurationError(f"{flag} does not apply to a {scheme}:// job store")
    try:
        if kind == "redis":
            from backbeat.migrate.sources.redis import RedisSource

            return RedisSource(url, options.jobs_key, options.run_times_key)
        if kind == "mongodb":
            from backbeat.migrate.sources.mongodb import MongoSource

            return MongoSource(url, options.collection)
        from backbeat.migrate.sources.sql import SQLSource

        return SQLSource(url, options.table)
    except ImportError as exc:
        raise ConfigurationError(
            f"reading a {scheme}:// job store needs {exc.name or 'a driver'}: pip install 'backbeat[migrate]'"
        ) from exc


__all__ = ["Source", "SourceOptions", "StoredJob", "open_source"]
