"""Configuration objects and the application settings dict, turned into a store and options."""

from __future__ import annotations

import inspect
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import timedelta
from typing import Any, Literal
from urllib.parse import quote, urlsplit, urlunsplit

from backbeat.abc import Executor, Store
from backbeat.errors import ConfigurationError
from backbeat.model.overlap import Overlap
from backbeat.model.records import TaskOptions
from backbeat.policies.definitions import option_json
from backbeat.stores import (
    SQLiteStore,
    mongodb_store_class,
    postgresql_store_class,
    redis_cluster_store_class,
    redis_store_class,
    store_from_url,
)

DEFAULT_STORE_URL = "sqlite:///backbeat.db"
"""The embedded default; ``BACKBEAT_STORE_URL`` overrides it."""


@dataclass(kw_only=True)
class RedisJobStoreConfig:
    """A Redis store. ``host`` may be a host name or a whole ``redis://`` URL."""

    host: str = "localhost"
    port: int = 6379
    db: int = 0
    password: str | None = None
    username: str | None = None
    ssl: bool = False
    connection_pool_size: int = 10
    health_check_interval: int = 30
    job_defaults: dict[str, Any] = field(default_factory=dict)
    distributed_lock_timeout: float | None = None
    """Lease length in seconds: how long a dead process's runs wait before another takes them."""
    lock_prefix: str | None = None
    """Key prefix (and Redis Cluster hash tag) of everything the store writes; default ``backbeat``."""
    cluster: bool = False
    """A sharded store on Redis Cluster (see ``ShardedRedisStore``): ``startup_nodes`` (else
    ``host``/``port``) name some of its nodes."""
    startup_nodes: list[tuple[str, int]] = field(default_factory=list)
    shards: int | None = None
    """Shards of a new cluster store (default 12); an existing store keeps its own."""
    durability: Literal["leader", "replica"] = "leader"
    """``replica``: a cluster store's writes wait for one replica's acknowledgement."""

    def url(self) -> str:
        """The Redis URL; ``password``, ``username``, ``ssl`` and ``db`` fill what a URL ``host`` lacks."""
        auth = ""
        if self.password is not None:
            auth = f"{quote(self.username or '', safe='')}:{quote(self.password, safe='')}@"
        if "://" not in self.host:
            scheme = "rediss" if self.ssl else "redis"
            return f"{scheme}://{auth}{self.host}:{self.port}/{self.db}"
        url = urlsplit(self.host)
        scheme = "rediss" if self.ssl else url.scheme
        netloc = url.netloc if "@" in url.netloc else f"{auth}{url.netloc}"
        path = url.path if url.path.strip("/") else f"/{self.db}"
        return urlunsplit((scheme, netloc, path, url.query, url.fragment))


@dataclass(kw_only=True)
class MongoJobStoreConfig:
    """A MongoDB store (settings keys ``mongo_uri``, ``mongo_db``, ``mongo_collection``)."""

    uri: str = "mongodb://localhost:27017"
    database: str = "backbeat"
    collection: str = "background_jobs"
    job_defaults: dict[str, Any] = field(default_factory=dict)


@dataclass(kw_only=True)
class PostgresJobStoreConfig:
    """A PostgreSQL store: tables ``<table_prefix>_*`` in the database of ``url``, created on first use."""

    url: str = "postgresql://postgres@localhost:5432/postgres"
    table_prefix: str | None = None
    """Default: the URL's ``?prefix=``, else ``backbeat``."""
    min_connections: int = 1
    max_connections: int = 10
    connect_timeout: float = 10.0
    lease_seconds: float | None = None
    """How long a dead process's runs wait before another takes them (the scheduler's default if unset)."""
    job_defaults: dict[str, Any] = field(default_factory=dict)


@dataclass(kw_only=True)
class SQLiteJobStoreConfig:
    """The embedded store: one SQLite file, shareable by several processes on one machine."""

    path: str = "backbeat.db"
    job_defaults: dict[str, Any] = field(default_factory=dict)


StoreConfig = RedisJobStoreConfig | MongoJobStoreConfig | PostgresJobStoreConfig | SQLiteJobStoreConfig


@dataclass(kw_only=True)
class SchedulerConfig:
    """Everything a scheduler can be configured with, in APScheduler's vocabulary."""

    job_stores: dict[str, StoreConfig | Store | str] = field(default_factory=dict)
    executors: dict[str, Executor | dict[str, Any]] = field(default_factory=dict)
    job_defaults: dict[str, Any] = field(default_factory=dict)
    timezone: str = "UTC"
    lease_seconds: float = 10.0
    batch_size: int = 500
    max_concurrency: int = 1000
    poll_interval: float = 1.0
    claim_ahead: float = 0.05
    """Seconds ahead of their fire time that tasks are claimed (their runs still start on time)."""
    shutdown_timeout: float = 30.0
    producer_only: bool = False
    history: bool = True
    """Record every finished run in the store (``run_history``, ``backbeat runs list``)."""
    history_retention: timedelta = timedelta(days=7)
    """Run history older than this is pruned."""
    history_per_task: int = 1000
    """Each task keeps about its newest this many history entries."""
    history_args: bool = False
    """Keep the task's (encoded) arguments in its history entries."""


def task_options(job_defaults: Mapping[str, Any], overrides: Mapping[str, Any] | None = None) -> TaskOptions:
    """Task options from ``job_defaults`` and per-task overrides.

    Raises:
        ConfigurationError: an unknown key or a value of the wrong kind.
    """
    merged = {
        **catchup_as_grace(job_defaults, "job_defaults"),
        **catchup_as_grace(overrides or {}, "options"),
    }
    for kind in ("retry", "circuit_breaker"):
        if kind in merged:
            merged[kind] = option_json(kind, merged[kind])
    known = {f.name for f in fields(TaskOptions)}
    unknown = sorted(set(merged) - known)
    if unknown:
        raise ConfigurationError(
            f"unknown job option(s) {', '.join(unknown)};"
            f" known: {', '.join(sorted(known | {'catchup_window'}))}"
        )
    options = TaskOptions(**merged)
    if not isinstance(options.max_instances, int) or options.max_instances < 1:
        raise ConfigurationError(f"max_instances must be an integer >= 1, got {options.max_instances!r}")
    if options.misfire_grace_time is not None and options.misfire_grace_time < 0:
        raise ConfigurationError(
            f"misfire_grace_time must be >= 0 or None, got {options.misfire_grace_time!r}"
        )
    if options.timeout is not None and options.timeout <= 0:
        raise ConfigurationError(f"timeout must be > 0 or None, got {options.timeout!r}")
    check_overlap(options)
    return options


def check_overlap(options: TaskOptions) -> None:
    """Check a task's overlap policy against its ``max_instances``.

    Raises:
        ConfigurationError: an unknown ``overlap``, or ``max_instances`` above 1 with a policy
            that allows one run at a time.
    """
    allowed = [policy.value for policy in Overlap]
    if options.overlap not in allowed:
        raise ConfigurationError(f"overlap must be one of {', '.join(allowed)}; got {options.overlap!r}")
    if options.overlap != Overlap.ALLOW_ALL and options.max_instances != 1:
        raise ConfigurationError(
            f"max_instances={options.max_instances} needs overlap='allow_all'; overlap="
            f"{options.overlap!r} runs one at a time"
        )


def catchup_as_grace(options: Mapping[str, Any], where: str) -> dict[str, Any]:
    """``options`` with ``catchup_window`` (a timedelta, seconds, or ``None`` for no bound)
    given as the ``misfire_grace_time`` seconds it stands for: the two name one bound.

    Raises:
        ConfigurationError: both are given in ``options``, or the window is not a duration >= 0.
    """
    if "catchup_window" not in options:
        return dict(options)
    result = dict(options)
    window = result.pop("catchup_window")
    if "misfire_grace_time" in result:
        raise ConfigurationError(
            f"both catchup_window and misfire_grace_time in {where}: they are one bound"
            " (catchup_window is its friendlier name), give one"
        )
    if isinstance(window, timedelta):
        seconds: float | None = window.total_seconds()
    elif window is None or (isinstance(window, int | float) and not isinstance(window, bool)):
        seconds = window
    else:
        raise ConfigurationError(
            f"catchup_window must be a timedelta, seconds or None, not {type(window).__name__} {window!r}"
        )
    if seconds is not None and not seconds >= 0:  # NaN too
        raise ConfigurationError(f"catchup_window must be >= 0 or None, got {window!r}")
    result["misfire_grace_time"] = seconds
    return result


def store_config_from_settings(settings: Mapping[str, Any]) -> StoreConfig | str:
    """A store from an application's ``background_job_store`` settings: ``redis_*``, ``mongo_*`` or
    ``postgres_*`` keys, or a ``url``.

    Raises:
        ConfigurationError: the dict mixes store kinds or names none.
    """
    redis_keys = {k for k in settings if k.startswith("redis_")}
    mongo_keys = {k for k in settings if k.startswith("mongo_")}
    postgres_keys = {k for k in settings if k.startswith("postgres_")}
    kinds = [
        kind
        for kind, keys in (("redis_*", redis_keys), ("mongo_*", mongo_keys), ("postgres_*", postgres_keys))
        if keys
    ]
    if len(kinds) > 1:
        raise ConfigurationError(f"background_job_store has {' and '.join(kinds)} keys; keep one store")
    if redis_keys:
        return RedisJobStoreConfig(
            host=str(settings.get("redis_host", "localhost")),
            port=int(settings.get("redis_port", 6379)),
            db=int(settings.get("redis_db", 0)),
            password=settings.get("redis_password"),
            lock_prefix=settings.get("redis_prefix"),
        )
    if mongo_keys:
        return MongoJobStoreConfig(
            uri=str(settings.get("mongo_uri", "mongodb://localhost:27017")),
            database=str(settings.get("mongo_db", "backbeat")),
            collection=str(settings.get("mongo_collection", "background_jobs")),
        )
    if postgres_keys:
        return PostgresJobStoreConfig(
            url=str(settings.get("postgres_url", PostgresJobStoreConfig.url)),
            table_prefix=settings.get("postgres_table_prefix"),
        )
    if "url" in settings:
        return str(settings["url"])
    if "sqlite_path" in settings:
        return SQLiteJobStoreConfig(path=str(settings["sqlite_path"]))
    if settings:
        raise ConfigurationError(
            f"background_job_store keys {sorted(settings)} name no store: "
            "use redis_host/redis_port/redis_db, "
            "mongo_uri/mongo_db/mongo_collection, postgres_url/postgres_table_prefix, url or sqlite_path"
        )
    return default_store_url()


def default_store_url() -> str:
    return os.environ.get("BACKBEAT_STORE_URL", DEFAULT_STORE_URL)


def pick_store(job_stores: Mapping[str, StoreConfig | Store | str]) -> StoreConfig | Store | str:
    """The one store of an APScheduler-style ``job_stores`` dict.

    Raises:
        ConfigurationError: more than one store (backbeat runs one durable store per scheduler).
    """
    if not job_stores:
        return default_store_url()
    if len(job_stores) > 1:
        raise ConfigurationError(
            f"job_stores has {len(job_stores)} stores ({', '.join(job_stores)}); a backbeat scheduler uses "
            "one store — run one scheduler per store"
        )
    return next(iter(job_stores.values()))


def build_store(spec: StoreConfig | Store | str) -> Store:
    """A store from a config object, a URL, or a ready store.

    Raises:
        ConfigurationError: unknown URL scheme, or the store's driver or module is missing.
    """
    if isinstance(spec, str):
        return store_from_url(spec)
    if isinstance(spec, SQLiteJobStoreConfig):
        return SQLiteStore(spec.path)
    if isinstance(spec, RedisJobStoreConfig):
        return _redis_store(spec)
    if isinstance(spec, MongoJobStoreConfig):
        return _mongo_store(spec)
    if isinstance(spec, PostgresJobStoreConfig):
        return _postgres_store(spec)
    if isinstance(spec, Store):
        _check_keywords(spec)
        return spec
    _check_methods(spec)
    raise ConfigurationError(f"cannot make a store from {spec!r}")


def _check_methods(spec: object) -> None:
    """Refuse an object that has some of the store protocol's methods (a store written for an
    older backbeat) naming the ones it lacks, rather than as no store at all."""
    methods = [name for name in vars(Store) if not name.startswith("_")]
    missing = [name for name in methods if not callable(getattr(spec, name, None))]
    if len(missing) < len(methods) // 2:
        raise ConfigurationError(
            f"store {type(spec).__name__} lacks {', '.join(f'{name}()' for name in missing)}, which "
            f"this backbeat calls (see the CHANGELOG: Store.{missing[0]})"
        )


_KEYWORDS = (("complete", "history"), ("put_state", "wake"))
"""Keywords of the store protocol that a store written for an older backbeat lacks."""


def _check_keywords(store: Store) -> None:
    """Refuse a store of the user's own whose methods lack a keyword the engine passes: each of
    its calls would fail with ``TypeError`` (and be retried for ever) instead of once, here."""
    for method, keyword in _KEYWORDS:
        parameters = inspect.signature(getattr(store, method)).parameters
        if keyword not in parameters and not any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
            raise ConfigurationError(
                f"store {type(store).__name__}: {method}() does not take the keyword {keyword!r}, "
                f"which this backbeat passes (see the CHANGELOG: Store.{method})"
            )


def _redis_store(config: RedisJobStoreConfig) -> Store:
    if config.cluster:
        return redis_cluster_store_class()(
            startup_nodes=config.startup_nodes or [(config.host, config.port)],
            prefix=config.lock_prefix,
            shards=config.shards,
            durability=config.durability,
            username=config.username,
            password=config.password,
            ssl=config.ssl,
            max_connections=config.connection_pool_size,
        )
    return redis_store_class()(
        config.url(),
        prefix=config.lock_prefix,  # None: the URL's ?prefix=, else backbeat
        max_connections=config.connection_pool_size,
        health_check_interval=config.health_check_interval,
    )


def _mongo_store(config: MongoJobStoreConfig) -> Store:
    return mongodb_store_class()(config.uri, database=config.database, collection=config.collection)


def _postgres_store(config: PostgresJobStoreConfig) -> Store:
    return postgresql_store_class()(
        config.url,
        table_prefix=config.table_prefix,
        min_size=config.min_connections,
        max_size=config.max_connections,
        connect_timeout=config.connect_timeout,
    )


def lease_of(spec: StoreConfig | Store | str, default: float) -> timedelta:
    if isinstance(spec, RedisJobStoreConfig) and spec.distributed_lock_timeout:
        return timedelta(seconds=spec.distributed_lock_timeout)
    if isinstance(spec, PostgresJobStoreConfig) and spec.lease_seconds:
        return timedelta(seconds=spec.lease_seconds)
    return timedelta(seconds=default)


def job_defaults_of(spec: StoreConfig | Store | str, scheduler_defaults: Mapping[str, Any]) -> dict[str, Any]:
    """Store-level job_defaults overlaid by scheduler-level ones (the scheduler's win)."""
    store_defaults = getattr(spec, "job_defaults", None) or {}
    return {**store_defaults, **scheduler_defaults}
