"""Which Redis the history section measures on (``bench/__main__.py``)."""

from __future__ import annotations

from bench.__main__ import DEFAULT_REDIS_URL, on_private_redis


def test_the_default_redis_store_is_measured_on_a_private_server() -> None:
    assert on_private_redis(DEFAULT_REDIS_URL, None)


def test_a_named_redis_server_or_store_url_is_measured_as_given() -> None:
    assert not on_private_redis("redis://10.0.0.5:6379/0", "redis://10.0.0.5:6379/0")
    assert not on_private_redis(DEFAULT_REDIS_URL, DEFAULT_REDIS_URL)
    assert not on_private_redis("redis://127.0.0.1:6380/0", None)


def test_other_stores_have_no_redis_server() -> None:
    assert not on_private_redis("sqlite:///bench.db", None)
