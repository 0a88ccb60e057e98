"""The stores a bench run measures: ``--stores memory sqlite redis [postgresql://...]``.

A name from :data:`KNOWN` or any store URL (named by its scheme) is accepted, so a new
backbeat store joins the bench without code here. A Redis store gets a key prefix unique to
the run, so the bench never touches another user's keys on a shared server (a ``prefix`` given
in its URL leads it).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from backbeat import BackgroundTaskScheduler, SchedulerConfig
from backbeat.abc import Store
from backbeat.api.config import RedisJobStoreConfig, StoreConfig

KNOWN: dict[str, Callable[[Path, str], str]] = {
    "memory": lambda tmp, redis_url: "memory://",
    "sqlite": lambda tmp, redis_url: f"sqlite:///{tmp / 'bench.db'}",
    "redis": lambda tmp, redis_url: redis_url,
}
"""Store names and how each makes its URL from (a temporary directory, ``--redis-url``)."""


@dataclass(frozen=True, slots=True)
class StoreTarget:
    """One backbeat store under test; it survives a trip through a subprocess's argv."""

    name: str
    url: str
    prefix: str = ""
    """Redis key prefix ("" for other stores)."""

    @classmethod
    def parse(cls, token: str, tmp: Path, redis_url: str) -> StoreTarget:
        """``memory``, ``sqlite``, ``redis`` or a store URL such as ``postgresql://host/db``."""
        url = KNOWN[token](tmp, redis_url) if token in KNOWN else token
        name = token if token in KNOWN else token.partition("://")[0]
        if not url.startswith("redis"):
            return cls(name, url)
        parts = urlsplit(url)
        query = parse_qsl(parts.query, keep_blank_values=True)
        lead = "".join(f"{value}-" for key, value in query if key == "prefix")
        rest = urlencode([(key, value) for key, value in query if key != "prefix"])
        url = parts._replace(query=rest).geturl()
        return cls(name, url, f"{lead}bench-{os.getpid()}-{uuid.uuid4().hex[:8]}")

    @property
    def shared(self) -> bool:
        """Whether another process sees this store (everything but ``memory://``)."""
        return not self.url.startswith("memory://")

    @property
    def baseline(self) -> str:
        """The APScheduler job store compared with: its Redis store for Redis, else its memory store."""
        return "redis" if self.url.startswith("redis") else "memory"

    def spec(self) -> StoreConfig | str:
        if self.prefix:
            return RedisJobStoreConfig(host=self.url, lock_prefix=self.prefix)
        return self.url

    def argv(self) -> list[str]:
        return [self.name, self.url, self.prefix]

    @classmethod
    def from_argv(cls, argv: list[str]) -> StoreTarget:
        return cls(argv[0], argv[1], argv[2] if len(argv) > 2 else "")

    def producer(self) -> BackgroundTaskScheduler:
        """A scheduler that adds but never runs (its store is opened by the first add)."""
        return BackgroundTaskScheduler(store=self.spec(), config=SchedulerConfig(producer_only=True))

    def worker(self, producer: BackgroundTaskScheduler, **options: Any) -> BackgroundTaskScheduler:
        """A scheduler that runs the producer's tasks; a memory store is shared as an object."""
        store: Store | StoreConfig | str = self.spec() if self.shared else producer.store
        return BackgroundTaskScheduler(store=store, **options)


async def drop_redis_keys(url: str, prefix: str) -> None:
    """Delete every key of a bench prefix (what ``clear()`` leaves: markers, indexes)."""
    import redis.asyncio

    client = redis.asyncio.from_url(url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{{{prefix}}}:*", count=1000)]
        for start in range(0, len(keys), 1000):
            await client.unlink(*keys[start : start + 1000])
    finally:
        await client.aclose()


async def redis_server_cpu(url: str) -> float:
    """Seconds of CPU the Redis server at ``url`` has used (user + system); 0 for another store."""
    if not url.startswith("redis"):
        return 0.0
    import redis.asyncio

    client = redis.asyncio.from_url(url)
    try:
        info = await client.info("cpu")
    finally:
        await client.aclose()
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def redis_used_memory(url: str) -> int:
    """The Redis server's ``used_memory`` in bytes."""
    import redis.asyncio

    client = redis.asyncio.from_url(url)
    try:
        info = await client.info("memory")
        return int(info["used_memory"])
    finally:
        await client.aclose()
