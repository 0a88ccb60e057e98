"""``store_from_url``: one store per URL scheme, clear errors for the rest."""

from __future__ import annotations

import sys

import pytest

from backbeat.errors import ConfigurationError
from backbeat.stores import MemoryStore, SQLiteStore, store_from_url


def test_memory() -> None:
    assert isinstance(store_from_url("memory://"), MemoryStore)


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///backbeat.db", "backbeat.db"),
        ("sqlite:///data/backbeat.db", "data/backbeat.db"),
        ("sqlite:////var/lib/backbeat.db", "/var/lib/backbeat.db"),
    ],
)
def test_sqlite_paths(url: str, path: str) -> None:
    store = store_from_url(url)
    assert isinstance(store, SQLiteStore) and store.path == path


def test_sqlite_options() -> None:
    store = store_from_url("sqlite:///x.db?busy_timeout=2.5&poll_interval=0.01")
    assert isinstance(store, SQLiteStore) and (store.busy_timeout, store.poll_interval) == (2.5, 0.01)
    with pytest.raises(ConfigurationError, match="unknown SQLite store option 'color'"):
        store_from_url("sqlite:///x.db?color=red")
    with pytest.raises(ConfigurationError, match="not a number"):
        store_from_url("sqlite:///x.db?busy_timeout=soon")


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///", "sqlite://host/x.db"])
def test_sqlite_urls_without_a_path_are_refused(url: str) -> None:
    with pytest.raises(ConfigurationError, match=r"sqlite:///relative/path\.db"):
        store_from_url(url)


def test_an_unknown_scheme_lists_the_known_ones() -> None:
    with pytest.raises(
        ConfigurationError, match=r"memory, sqlite, redis, rediss, redis\+cluster, postgresql"
    ) as raised:
        store_from_url("cassandra://user:secret@host/db")
    assert "secret" not in str(raised.value)
    with pytest.raises(ConfigurationError, match="known schemes"):
        store_from_url("backbeat.db")


def test_a_store_missing_from_this_version(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "backbeat.stores.postgresql", None)
    with pytest.raises(ConfigurationError, match="PostgreSQL store is not available in this version"):
        store_from_url("postgresql://localhost/db")


def test_a_missing_driver_names_the_extra_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in sys.modules if n == "redis" or n.startswith(("redis.", "backbeat.stores.redis"))]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "redis", None)
    with pytest.raises(ConfigurationError, match=r"needs the redis package.*pip install 'backbeat\[redis\]'"):
        store_from_url("redis://localhost:6379/0")


def test_redis_urls_make_redis_stores() -> None:
    pytest.importorskip("backbeat.stores.redis")
    for url in ("redis://localhost:6379/0", "rediss://localhost:6380/1"):
        assert type(store_from_url(url)).__name__ == "RedisStore"


def test_a_redis_url_carries_the_key_prefix() -> None:
    pytest.importorskip("backbeat.stores.redis")
    from backbeat.stores.redis import RedisStore
    from backbeat.stores.redis.connection import split_prefix

    assert split_prefix("redis://h:6379/2?prefix=svc&socket_timeout=3") == (
        "redis://h:6379/2?socket_timeout=3",
        "svc",
    )
    assert split_prefix("redis://h:6379/2") == ("redis://h:6379/2", None)
    store = store_from_url("redis://localhost:6379/0?prefix=svc")
    assert isinstance(store, RedisStore) and store.keys.prefix == "svc"
    assert RedisStore("redis://localhost:6379/0?prefix=svc", prefix="explicit").keys.prefix == "explicit"
    assert RedisStore("redis://localhost:6379/0").keys.prefix == "backbeat"
