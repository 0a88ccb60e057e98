"""The stores, and :func:`store_from_url`, which picks one by URL scheme.

Server stores (Redis, PostgreSQL, MongoDB) are imported only when their URL is used, so
their drivers are optional extras.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, NamedTuple
from urllib.parse import parse_qsl, urlsplit

from backbeat.abc import Store
from backbeat.errors import ConfigurationError
from backbeat.stores.memory import MemoryStore
from backbeat.stores.sqlite.store import SQLiteStore

if TYPE_CHECKING:
    from backbeat.stores.mongodb import MongoStore
    from backbeat.stores.postgresql import PostgreSQLStore
    from backbeat.stores.redis import RedisStore
    from backbeat.stores.redis.cluster import ShardedRedisStore


class _Backend(NamedTuple):
    title: str
    extra: str
    """The ``pip install 'backbeat[extra]'`` extra."""
    driver: str
    """The package the extra installs."""


_BACKENDS = {
    "redis": _Backend("Redis", "redis", "redis"),
    "rediscluster": _Backend("Redis Cluster", "redis", "redis"),
    "postgresql": _Backend("PostgreSQL", "postgresql", "asyncpg"),
    "mongodb": _Backend("MongoDB", "mongodb", "pymongo"),
}
_SCHEMES = {
    "redis": "redis",
    "rediss": "redis",
    "redis+cluster": "rediscluster",
    "postgresql": "postgresql",
    "postgres": "postgresql",
    "mongodb": "mongodb",
    "mongodb+srv": "mongodb",
}


@contextlib.contextmanager
def _driver_of(kind: str) -> Iterator[None]:
    """Turns the ImportError of a server store whose driver is missing into a clear error."""
    backend = _BACKENDS[kind]
    try:
        yield
    except ImportError as exc:
        missing = exc.name or ""
        if missing == "backbeat" or missing.startswith("backbeat."):
            raise ConfigurationError(
                f"the {backend.title} store is not available in this version of backbeat"
            ) from exc
        raise ConfigurationError(
            f"the {backend.title} store needs the {backend.driver} package ({exc}): "
            f"pip install 'backbeat[{backend.extra}]'"
        ) from exc


def redis_store_class() -> type[RedisStore]:
    """``RedisStore``, imported on first use (its driver is an optional extra).

    Raises:
        ConfigurationError: redis-py is not installed.
    """
    with _driver_of("redis"):
        from backbeat.stores.redis import RedisStore
    return RedisStore


def redis_cluster_store_class() -> type[ShardedRedisStore]:
    """``ShardedRedisStore`` (the sharded store on Redis Cluster), imported on first use.

    Raises:
        ConfigurationError: redis-py is not installed.
    """
    with _driver_of("redis"):
        from backbeat.stores.redis.cluster import ShardedRedisStore
    return ShardedRedisStore


def postgresql_store_class() -> type[PostgreSQLStore]:
    """``PostgreSQLStore``, imported on first use.

    Raises:
        ConfigurationError: asyncpg is not installed.
    """
    with _driver_of("postgresql"):
        from backbeat.stores.postgresql import PostgreSQLStore
    return PostgreSQLStore


def mongodb_store_class() -> type[MongoStore]:
    """``MongoStore``, imported on first use.

    Raises:
        ConfigurationError: PyMongo is not installed.
    """
    with _driver_of("mongodb"):
        from backbeat.stores.mongodb import MongoStore
    return MongoStore


_SERVER_STORES: dict[str, Callable[[], Callable[[str], Store]]] = {
    "redis": redis_store_class,
    "rediscluster": redis_cluster_store_class,
    "postgresql": postgresql_store_class,
    "mongodb": mongodb_store_class,
}
KNOWN_SCHEMES = ("memory", "sqlite", *_SCHEMES)


def store_from_url(url: str) -> Store:
    """A store for ``url``: ``memory://``, ``sqlite:///relative.db``, ``sqlite:////abs/path.db``,
    ``redis://``, ``rediss://``, ``redis+cluster://``, ``postgresql://``, ``mongodb://`` or
    ``mongodb+srv://``.

    SQLite URLs take ``?busy_timeout=<seconds>&poll_interval=<seconds>``. Redis URLs take
    ``?prefix=<key prefix>`` (default ``backbeat``); their other options go to redis-py. Redis Cluster
    URLs name several ``host:port`` and take ``?prefix=``, ``&shards=`` and ``&durability=replica``
    (see :class:`~backbeat.stores.redis.cluster.ShardedRedisStore`). PostgreSQL URLs take
    ``?prefix=<table prefix>`` (default ``backbeat``); their other options go to asyncpg. MongoDB URLs name
    the database in their path and the tasks collection with ``?collection=<name>``
    (defaults ``backbeat`` and ``background_jobs``).

    Raises:
        ConfigurationError: unknown scheme, or the store's module or driver is missing.
    """
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme == "memory":
        return MemoryStore()
    if scheme == "sqlite":
        return _sqlite(url)
    if scheme in _SCHEMES:
        return _SERVER_STORES[_SCHEMES[scheme]]()(url)
    raise ConfigurationError(
        f"unknown store URL {_scheme_only(url)!r}: the known schemes are {', '.join(KNOWN_SCHEMES)}"
    )


def _sqlite(url: str) -> SQLiteStore:
    parts = urlsplit(url)
    # sqlite:///relative.db has the path "/relative.db"; sqlite:////abs.db has "//abs.db"
    path = parts.path[1:] if parts.path.startswith("/") else parts.path
    if parts.netloc or not path:
        raise ConfigurationError(
            f"a SQLite store URL is sqlite:///relative/path.db or sqlite:////absolute/path.db, not {url!r}"
        )
    options: dict[str, float] = {}
    for key, value in parse_qsl(parts.query):
        if key not in ("busy_timeout", "poll_interval"):
            raise ConfigurationError(
                f"unknown SQLite store option {key!r} (known: busy_timeout, poll_interval)"
            )
        try:
            options[key] = float(value)
        except ValueError:
            raise ConfigurationError(
                f"SQLite store option {key}={value!r} is not a number of seconds"
            ) from None
    return SQLiteStore(
        path,
        busy_timeout=options.get("busy_timeout", 10.0),
        poll_interval=options.get("poll_interval", 0.005),
    )


def _scheme_only(url: str) -> str:
    """The URL without what may be a password."""
    return url.partition("://")[0] + "://..." if "://" in url else url


__all__ = [
    "KNOWN_SCHEMES",
    "MemoryStore",
    "SQLiteStore",
    "mongodb_store_class",
    "postgresql_store_class",
    "redis_store_class",
    "store_from_url",
]
