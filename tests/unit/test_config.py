"""Store configuration: the seed 003 config objects and the seed 000 settings dict."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import pytest

from backbeat import ConfigurationError, PostgresJobStoreConfig, RedisJobStoreConfig, SQLiteJobStoreConfig
from backbeat.api.config import build_store, lease_of, pick_store, store_config_from_settings, task_options
from backbeat.model.records import RunResult
from backbeat.stores.memory import MemoryStore


@pytest.mark.parametrize(
    ("config", "url"),
    [
        (RedisJobStoreConfig(host="redis", port=6380, db=2), "redis://redis:6380/2"),
        (
            RedisJobStoreConfig(host="redis://localhost:6379", db=1, password="p@ss"),
            "redis://:p%40ss@localhost:6379/1",
        ),
        (
            RedisJobStoreConfig(host="redis://u:pw@localhost:6379/3", password="other"),
            "redis://u:pw@localhost:6379/3",
        ),
        (
            RedisJobStoreConfig(host="localhost", ssl=True, username="me", password="pw"),
            "rediss://me:pw@localhost:6379/0",
        ),
    ],
)
def test_redis_config_urls(config: RedisJobStoreConfig, url: str) -> None:
    assert config.url() == url


def test_settings_dict_selects_the_store() -> None:
    redis = store_config_from_settings({"redis_host": "redis", "redis_port": 6379, "redis_db": 1})
    assert isinstance(redis, RedisJobStoreConfig) and redis.url() == "redis://redis:6379/1"
    assert store_config_from_settings({"sqlite_path": "x.db"}) == SQLiteJobStoreConfig(path="x.db")
    with pytest.raises(ConfigurationError, match="redis_\\* and mongo_\\* keys; keep one store"):
        store_config_from_settings({"redis_host": "a", "mongo_uri": "b"})
    postgres = store_config_from_settings(
        {"postgres_url": "postgresql://u@db:5433/jobs", "postgres_table_prefix": "svc"}
    )
    assert postgres == PostgresJobStoreConfig(url="postgresql://u@db:5433/jobs", table_prefix="svc")
    with pytest.raises(ConfigurationError, match="name no store"):
        store_config_from_settings({"host": "a"})


def test_one_store_per_scheduler() -> None:
    with pytest.raises(ConfigurationError, match="one store"):
        pick_store({"a": "memory://", "b": "memory://"})


def test_job_options_are_validated() -> None:
    assert task_options({"coalesce": False}, {"max_instances": 3}).max_instances == 3
    with pytest.raises(ConfigurationError, match="unknown job option"):
        task_options({"misfire": 3})
    with pytest.raises(ConfigurationError, match="max_instances"):
        task_options({"max_instances": 0})


def test_a_postgres_config_builds_the_store_it_describes() -> None:
    config = PostgresJobStoreConfig(
        url="postgresql://u:secret@db:5433/jobs?prefix=ignored", table_prefix="svc", lease_seconds=7
    )
    store = build_store(config)
    assert type(store).__name__ == "PostgreSQLStore"
    assert "secret" not in repr(store) and "svc" in repr(store) and "db:5433/jobs" in repr(store)
    assert lease_of(config, 30.0) == timedelta(seconds=7)
    with pytest.raises(ConfigurationError, match="table prefix 'Bad-Prefix'"):
        build_store(PostgresJobStoreConfig(table_prefix="Bad-Prefix"))


def test_a_redis_cluster_config_builds_a_sharded_store() -> None:
    from backbeat.stores.redis.cluster import ShardedRedisStore

    config = RedisJobStoreConfig(
        cluster=True, startup_nodes=[("10.0.0.1", 7000)], shards=24, durability="replica", lock_prefix="jobs"
    )
    store = build_store(config)
    assert isinstance(store, ShardedRedisStore)
    assert (store.startup_nodes, store.prefix, store.wanted_shards, store.durability) == (
        (("10.0.0.1", 7000),),
        "jobs",
        24,
        "replica",
    )
    plain = build_store(RedisJobStoreConfig(cluster=True, host="10.0.0.2", port=7001))
    assert isinstance(plain, ShardedRedisStore) and plain.startup_nodes == (("10.0.0.2", 7001),)


@pytest.mark.parametrize("overlap", ["skip", "buffer_one", "buffer_all", "cancel_other", "allow_all"])
def test_overlap_policies_are_task_options(overlap: str) -> None:
    assert task_options({}, {"overlap": overlap}).overlap == overlap


def test_an_unknown_overlap_policy_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(ConfigurationError, match=r"overlap must be one of .*buffer_one.*'queue'"):
        task_options({}, {"overlap": "queue"})


def test_max_instances_above_one_needs_allow_all() -> None:
    assert task_options({}, {"overlap": "allow_all", "max_instances": 3}).max_instances == 3
    with pytest.raises(ConfigurationError, match="max_instances=3 needs overlap='allow_all'"):
        task_options({"max_instances": 3}, {"overlap": "skip"})


class _OlderStore(MemoryStore):
    """A store written against an older protocol: its completion takes no ``history``."""

    async def complete(self, owner: str, results: Sequence[RunResult]) -> set[str]:  # type: ignore[override]
        return await super().complete(owner, results)


class _StoreWithoutQuarantine:
    """A store written before ``Store.quarantine``: every other method, delegated."""

    def __init__(self) -> None:
        self._store = MemoryStore()

    def __getattr__(self, name: str) -> object:
        if name == "quarantine":
            raise AttributeError(name)
        return getattr(self._store, name)


def test_a_store_without_a_method_the_engine_calls_is_refused_naming_it() -> None:
    with pytest.raises(ConfigurationError, match=r"_StoreWithoutQuarantine lacks quarantine\(\), which"):
        build_store(_StoreWithoutQuarantine())  # type: ignore[arg-type]  # what mypy refuses, refused at run time
    with pytest.raises(ConfigurationError, match=r"cannot make a store from 42"):
        build_store(42)  # type: ignore[arg-type]


def test_a_store_without_a_keyword_the_engine_passes_is_refused_when_given() -> None:
    assert isinstance(build_store(MemoryStore()), MemoryStore)
    with pytest.raises(
        ConfigurationError, match=r"_OlderStore: complete\(\) does not take the keyword 'history'"
    ):
        build_store(_OlderStore())  # type: ignore[arg-type]  # what mypy refuses, refused at run time
