"""The Redis store (``pip install 'backbeat[redis]'``)."""

from __future__ import annotations

from backbeat.stores.redis.store import RedisStore

__all__ = ["RedisStore"]
