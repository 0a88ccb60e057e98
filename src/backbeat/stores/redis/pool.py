"""A connection pool that makes a caller wait for a free connection only when every one is in use."""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import MaxConnectionsError


class PoolTimeoutError(MaxConnectionsError):
    """Every connection of a :class:`WaitingConnectionPool` stayed in use for the whole of a
    caller's wait: no connection failed, so this is no reason to connect anew."""


class WaitingConnectionPool(redis.asyncio.ConnectionPool):
    """redis-py's pool, except that a caller finding all ``max_connections`` in use waits up to
    ``timeout`` seconds for one to be released instead of failing with "Too many connections"
    (then it fails with :class:`PoolTimeoutError`).

    redis-py's ``BlockingConnectionPool`` does the same but takes an ``asyncio.Condition`` and
    arms a timeout on every call, full or not; here a caller that finds a connection pays what
    the plain pool costs and two coroutine frames. A caller fails with "Too many connections"
    only from the plain pool, inside the pool's lock, without a pause before it waits: a release
    after that wakes it.
    """

    def __init__(self, *, timeout: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.timeout = timeout
        self._released: asyncio.Event | None = None
        """Set by the next release, for the callers waiting (made by the first of them)."""

    async def get_connection(self, *args: Any, **kwargs: Any) -> AbstractConnection:
        try:
            connection: AbstractConnection = await super().get_connection(*args, **kwargs)  # type: ignore[no-untyped-call]
            return connection
        except MaxConnectionsError:
            pass
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        while True:
            if self._released is None:
                self._released = asyncio.Event()
            released = self._released
            try:
                async with asyncio.timeout_at(deadline):
                    await released.wait()
            except TimeoutError:
                raise PoolTimeoutError(
                    f"no connection of the pool's {self.max_connections} (max_connections, "
                    f"connection_pool_size) was released within {self.timeout:g} s: the calls "
                    "in flight held them all (a pool too small for them, or a server slow to answer)"
                ) from None
            try:
                connection = await super().get_connection(*args, **kwargs)  # type: ignore[no-untyped-call]
                return connection
            except MaxConnectionsError:  # another waiter took it first
                continue

    async def release(self, connection: AbstractConnection) -> None:
        try:
            await super().release(connection)
        finally:  # (a release cancelled mid-way still ends in the background: waiters retry)
            released, self._released = self._released, None
            if released is not None:
                released.set()
