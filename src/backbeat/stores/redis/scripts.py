"""The Lua scripts of the Redis store, loaded from ``scripts/*.lua`` package data."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from importlib import resources
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.commands.core import AsyncScript
from redis.exceptions import ClusterDownError, NoScriptError, SlotNotCoveredError

from backbeat.stores.redis import lualib
from backbeat.stores.redis.direct import Resend
from backbeat.stores.redis.durability import LOST, run_acknowledged

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
    "history_read",
    "history_windows",
    "history_prune",
)
READS = frozenset({"read", "next", "exists", "history_read", "history_windows"})
"""The scripts that write nothing (a replica's acknowledgement is never waited for)."""


HELPERS = "--[[ the shared helpers ]]\n"
"""The line of a script where the helpers go, if not in front: the code above it runs without
their definitions (each a closure made again on every call)."""


@functools.cache
def source(name: str) -> str:
    """The text of one script, with the shared helpers of ``_lib.lua`` it uses in front, or at
    its :data:`HELPERS` line."""
    folder = resources.files("backbeat.stores.redis").joinpath("scripts")
    script = folder.joinpath(f"{name}.lua").read_text("utf-8")
    head, marked, body = script.partition(HELPERS)
    if not marked:
        head, body = "", script
    return head + marked + lualib.needed(folder.joinpath("_lib.lua").read_text("utf-8"), script) + "\n" + body


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

    async def resending(self, name: str, args: Sequence[Any], resend: Resend) -> Any:
        """Call one script sent once and, if its connection fails (the server may have run it,
        its reply lost), once more with the arguments ``resend`` makes of ``args`` instead of the
        client's retry of the same ones; only that second sending goes through the client's
        retries, so ``resend`` must make a sending that may run twice.

        On Redis Cluster (the client of a shard of a sharded store) or with writes acknowledged
        by a replica; a single Redis's adds go through :mod:`.direct`.
        """
        script = self._scripts[name]
        if self._acknowledged:
            return await run_acknowledged(
                self._client, script.sha, source(name), self._keys, [self._base, *args], resend=resend
            )
        try:
            return await self._once(name, [self._base, *args])
        except LOST:
            pass  # the server may have run it: its reply is what was lost
        except (ClusterDownError, SlotNotCoveredError):
            pass  # nothing ran: the client's retries wait for the cluster (the resend does no harm)
        return await self(name, *resend(args))

    async def _once(self, name: str, args: list[Any]) -> Any:
        """The script's reply, sent without the client's retry (a redirection is still followed)."""
        client = self._client
        sha = self._scripts[name].sha
        if not isinstance(client, RedisCluster):
            raise TypeError("a single Redis's scripts are sent once by DirectScript")
        node = client.get_node_from_key(self._keys[0])  # a node named: the cluster client retries nothing
        assert node is not None
        for attempt in (1, 2):
            try:
                return await client.execute_command(
                    "EVALSHA", sha, len(self._keys), *self._keys, *args, target_nodes=node
                )
            except NoScriptError:  # nothing ran
                if attempt == 2:
                    raise
                await client.script_load(source(name))
        raise AssertionError("unreachable")
