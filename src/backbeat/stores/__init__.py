"""The stores, and :func:`store_from_url`, which picks one by URL scheme.

Server stores (Redis, PostgreSQL, MongoDB) are imported only when their URL is used, so
their drivers are optional extras.
"""

from __future__ import annotations

import importlib
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, urlsplit

from backbeat.abc import Store
from backbeat.errors import ConfigurationError
from backbeat.stores.memory import MemoryStore
from backbeat.stores.sqlite.store import SQLiteStore


class _Backend(NamedTuple):
    title: str
    module: str
    store: str
    """Class name in ``module``, called with the URL."""
    extra: str
    """The ``pip install 'backbeat[extra]'`` extra, which is also its driver's package name."""


_SERVERS = {
    "redis": _Backend("redis", "backbeat.stores.redis", "RedisStore", "redis"),
    "postgresql": _Backend("PostgreSQL", "backbeat.stores.postgresql", "PostgresStore", "postgres"),
    "mongodb": _Backend("MongoDB", "backbeat.stores.mongodb", "MongoStore", "mongodb"),
}
_SCHEMES = {
    "redis": "redis",
    "rediss": "redis",
    "postgresql": "postgresql",
    "postgres": "postgresql",
    "mongodb": "mongodb",
    "mongodb+srv": "mongodb",
}
_DRIVERS = {"redis": "redis", "postgres": "asyncpg", "mongodb": "pymongo"}
KNOWN_SCHEMES = ("memory", "sqlite", *_SCHEMES)


def store_from_url(url: str) -> Store:
    """A store for ``url``: ``memory://``, ``sqlite:///relative.db``, ``sqlite:////abs/path.db``,
    ``redis://``, ``rediss://``, ``postgresql://``, ``mongodb://`` or ``mongodb+srv://``.

    SQLite URLs take ``?busy_timeout=<seconds>&poll_interval=<seconds>``. Redis URLs take
    ``?prefix=<key prefix>`` (default ``backbeat``); their other options go to redis-py. PostgreSQL URLs take
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
        return _server(_SERVERS[_SCHEMES[scheme]], url)
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
    return SQLiteStore(path, **options)


def _server(backend: _Backend, url: str) -> Store:
    try:
        module = importlib.import_module(backend.module)
    except ImportError as exc:
        missing = exc.name or ""
        if missing == "backbeat" or missing.startswith("backbeat."):
            raise ConfigurationError(
                f"the {backend.title} store is not available in this version of backbeat"
            ) from exc
        raise ConfigurationError(
            f"the {backend.title} store needs the {_DRIVERS[backend.extra]} package ({exc}): "
            f"pip install 'backbeat[{backend.extra}]'"
        ) from exc
    store_class: Any = getattr(module, backend.store, None)
    if store_class is None:
        raise ConfigurationError(f"the {backend.title} store is not available in this version of backbeat")
    store: Store = store_class(url)
    return store


def _scheme_only(url: str) -> str:
    """The URL without what may be a password."""
    return url.partition("://")[0] + "://..." if "://" in url else url


__all__ = ["KNOWN_SCHEMES", "MemoryStore", "SQLiteStore", "store_from_url"]
