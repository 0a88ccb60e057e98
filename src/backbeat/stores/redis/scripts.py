"""The Lua scripts of the Redis store, loaded from ``scripts/*.lua`` package data."""

from __future__ import annotations

import functools
from importlib import resources
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.commands.core import AsyncScript

from backbeat.stores.redis.durability import run_acknowledged

NAMES = (
    "add",
    "claim",
    "fire",
    "complete",
    "extend",
    "release",
    "enqueue",
    "remove",
    "update",
    "read",
    "quarantine",
    "next",
    "clear",
    "exists",
    "requeue",
    "put_state",
    "history",
)
READS = frozenset({"read", "next", "exists"})
"""The scripts that write nothing (a replica's acknowledgement is never waited for)."""


@functools.cache
def source(name: str) -> str:
    """The text of one script, with the shared helpers of ``_lib.lua`` in front."""
    folder = resources.files("backbeat.stores.redis").joinpath("scripts")
    lib = folder.joinpath("_lib.lua").read_text("utf-8")
    return lib + "\n" + folder.joinpath(f"{name}.lua").read_text("utf-8")


class Scripts:
    """The scripts registered on one client; a call reloads a script flushed from the server.

    With ``acknowledged``, a script that writes returns only once one replica has its writes
    (see :mod:`backbeat.stores.redis.durability`).
    """

    def __init__(
        self, client: Redis | RedisCluster, base: str, routing_key: str, *, acknowledged: bool = False
    ) -> None:
        self._client = client
        self._base = base
        self._keys = [routing_key]
        self._acknowledged = acknowledged
        self._scripts: dict[str, AsyncScript] = {name: client.register_script(source(name)) for name in NAMES}

    def sha(self, name: str) -> str:
        """The SHA1 digest ``EVALSHA`` names one script by."""
        return self._scripts[name].sha

    async def load(self) -> None:
        """Load every script into the server's script cache (EVALSHA then needs no retry)."""
        for name in NAMES:
            await self._client.script_load(source(name))

    async def __call__(self, name: str, *args: Any) -> Any:
        # KEYS[1] routes the call in Redis Cluster; the scripts build their key names from the
        # prefix in ARGV[1], all with the same hash tag, so they stay in that key's slot.
        if self._acknowledged and name not in READS:
            script = self._scripts[name]
            return await run_acknowledged(
                self._client, script.sha, source(name), self._keys, [self._base, *args]
            )
        return await self._scripts[name](keys=self._keys, args=[self._base, *args])
