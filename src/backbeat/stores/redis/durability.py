"""Writes acknowledged by a replica: a script and ``WAIT 1`` sent on one connection.

``WAIT`` waits for the writes of *its own connection*, so it must follow the script on the
connection that ran it: one pipeline on a single Redis, the shard master's own connection on
Redis Cluster (a cluster client would send a keyless ``WAIT`` to any node). Scripts cannot call
``WAIT`` themselves.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import redis.asyncio
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import AskError, MovedError, NoScriptError, ResponseError, TryAgainError
from redis.exceptions import ConnectionError as RedisConnectionError

log = logging.getLogger("backbeat.stores.redis")

WAIT_MS = 1000
"""How long a write waits for a replica's acknowledgement before it returns anyway (logged)."""


async def run_acknowledged(
    client: redis.asyncio.Redis | RedisCluster, sha: str, source: str, keys: list[str], args: list[Any]
) -> Any:
    """Run the script ``sha`` (loading ``source`` if the server lost it), then wait until one
    replica has its writes; the script's reply.

    Raises:
        redis.exceptions.RedisError: the script failed, the node could not be reached, or it no
            longer serves the key's slot (the cluster client then refreshes its slot map).
    """
    for attempt in (1, 2):
        try:
            reply, acknowledged = await _script_and_wait(client, sha, keys, args)
        except NoScriptError:
            if attempt == 2:
                raise
            await client.script_load(source)
            continue
        if acknowledged < 1:
            log.warning("a write was not acknowledged by a replica within %d ms", WAIT_MS)
        return reply
    raise AssertionError("unreachable")


async def _script_and_wait(
    client: redis.asyncio.Redis | RedisCluster, sha: str, keys: list[str], args: list[Any]
) -> tuple[Any, int]:
    if not isinstance(client, RedisCluster):
        async with client.pipeline(transaction=False) as pipe:  # one connection for both
            pipe.evalsha(sha, len(keys), *keys, *args)
            pipe.execute_command("WAIT", 1, WAIT_MS)
            reply, acknowledged = await pipe.execute()
            return reply, int(acknowledged)
    node = client.get_node_from_key(keys[0])
    assert node is not None
    connection = node.acquire_connection()
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
        if isinstance(exc, ConnectionError | TimeoutError | OSError | RedisConnectionError):
            await _refresh(client)  # the master may be gone: the next call asks who serves the slot
        raise
    finally:
        node.release(connection)
    reply, acknowledged = replies
    if isinstance(reply, MovedError | AskError | TryAgainError):
        await _refresh(client)  # the slot moved (a failover, a reshard): the next call goes there
    if isinstance(reply, BaseException):
        raise reply
    if isinstance(acknowledged, BaseException):  # the script ran; only the wait failed
        log.warning("waiting for a replica failed: %s", acknowledged)
        return reply, 0
    return reply, int(acknowledged)


async def _refresh(client: RedisCluster) -> None:
    with contextlib.suppress(Exception):
        await client.nodes_manager.initialize()


__all__ = ["WAIT_MS", "run_acknowledged"]
