"""Writes acknowledged by a replica: a script and ``WAIT 1`` sent on one connection.

``WAIT`` waits for the writes of *its own connection*, so it must follow the script on the
connection that ran it: a connection of the pool on a single Redis, the shard master's own
connection on Redis Cluster (a cluster client would send a keyless ``WAIT`` to any node).
Scripts cannot call ``WAIT`` themselves.

The pair is sent on the connection itself, not through the client's retry: a sending whose
connection fails may have run, so it is sent once more with the arguments a ``resend`` makes of
the first (an add's are marked, so that its own earlier write is not taken for another's).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

import redis.asyncio
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import AskError, MovedError, NoScriptError, ResponseError, TryAgainError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from backbeat.stores.redis.direct import Resend

log = logging.getLogger("backbeat.stores.redis")

WAIT_MS = 1000
"""How long a write waits for a replica's acknowledgement before it returns anyway (logged)."""

LOST = (ConnectionError, TimeoutError, OSError, RedisConnectionError, RedisTimeoutError)
"""Errors after which a sent script may have run, its reply lost."""


def same(args: Sequence[Any]) -> Sequence[Any]:
    """Send the very same arguments again (a script whose second run does no harm)."""
    return args


async def run_acknowledged(
    client: redis.asyncio.Redis | RedisCluster,
    sha: str,
    source: str,
    keys: list[str],
    args: list[Any],
    *,
    resend: Resend | None = None,
) -> Any:
    """Run the script ``sha`` (loading ``source`` if the server lost it), then wait until one
    replica has its writes; the script's reply.

    ``args`` are the prefix, then the script's own. A sending whose connection fails is sent once
    more with ``resend``'s arguments; without one, on a single Redis with the same ones (as the
    client's own retry would), on Redis Cluster not at all.

    Raises:
        redis.exceptions.RedisError: the script failed, the node could not be reached, or it no
            longer serves the key's slot (the cluster client then refreshes its slot map).
    """
    if resend is None and not isinstance(client, RedisCluster):
        resend = same
    sending, loaded, resent = args, False, False
    while True:
        try:
            reply, acknowledged = await _script_and_wait(client, sha, keys, sending)
        except NoScriptError:  # nothing ran
            if loaded:
                raise
            loaded = True
            await client.script_load(source)
            continue
        except LOST:
            if resent or resend is None:
                raise
            resent = True
            sending = [args[0], *resend(args[1:])]
            continue
        if acknowledged < 1:
            log.warning("a write was not acknowledged by a replica within %d ms", WAIT_MS)
        return reply


async def _script_and_wait(
    client: redis.asyncio.Redis | RedisCluster, sha: str, keys: list[str], args: list[Any]
) -> tuple[Any, int]:
    async with _connection_for(client, keys[0]) as connection:
        try:
            await connection.send_packed_command(
                connection.pack_commands([("EVALSHA", sha, len(keys), *keys, *args), ("WAIT", 1, WAIT_MS)])
            )
            replies: list[Any] = []
            for _ in range(2):  # both replies are read, so the connection stays usable after an error
                try:
                    replies.append(await connection.read_response())
                except ResponseError as exc:
                    replies.append(exc)
        except BaseException as exc:
            await connection.disconnect()
            if isinstance(client, RedisCluster) and isinstance(exc, LOST):
                await _refresh(client)  # the master may be gone: the next call asks who serves the slot
            raise
    reply, acknowledged = replies
    if isinstance(client, RedisCluster) and isinstance(reply, MovedError | AskError | TryAgainError):
        await _refresh(client)  # the slot moved (a failover, a reshard): the next call goes there
    if isinstance(reply, BaseException):
        raise reply
    if isinstance(acknowledged, BaseException):  # the script ran; only the wait failed
        log.warning("waiting for a replica failed: %s", acknowledged)
        return reply, 0
    return reply, int(acknowledged)


@contextlib.asynccontextmanager
async def _connection_for(
    client: redis.asyncio.Redis | RedisCluster, key: str
) -> AsyncIterator[AbstractConnection]:
    """A connection to the node serving ``key``, held for one call."""
    if isinstance(client, RedisCluster):
        node = client.get_node_from_key(key)
        assert node is not None
        connection = node.acquire_connection()
        try:
            yield connection
        finally:
            node.release(connection)
        return
    pool = client.connection_pool
    pooled = await pool.get_connection()  # type: ignore[no-untyped-call]
    try:
        yield pooled
    finally:
        await pool.release(pooled)


async def _refresh(client: RedisCluster) -> None:
    with contextlib.suppress(Exception):
        await client.nodes_manager.initialize()


__all__ = ["LOST", "WAIT_MS", "run_acknowledged", "same"]
