"""Wake-ups from MongoDB change streams, when the server offers them.

Change streams exist only on replica sets and sharded clusters. On a standalone server
``watch`` is refused, and this iterator then yields nothing until the store closes: the
engine polls the store (``poll_interval``, and ``next_wakeup``) anyway, so a standalone
server costs only latency, never correctness. Any other error (a lost connection) is
retried with backoff, never raised, and one wake-up is yielded after reconnecting, since
anything may have changed meanwhile. Changes made through the same store instance wake
its listeners directly, server or no server (``Connection.wakeups``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import ConnectionFailure, OperationFailure, PyMongoError

log = logging.getLogger("backbeat.stores.mongodb")

NOT_SUPPORTED = (40573, 40324, 136)
"""``$changeStream`` refused: not a replica set, unrecognized stage, change streams disabled."""
_POLL_MS = 1000
"""Milliseconds one read of the stream waits, so a closed store ends the iterator promptly."""
_BACKOFF_MIN, _BACKOFF_MAX = 0.1, 5.0


def change_pipeline(collections: list[str]) -> list[dict[str, Any]]:
    """Changes of the store's task, run and state collections only."""
    return [{"$match": {"ns.coll": {"$in": collections}}}]


def unsupported(exc: PyMongoError) -> bool:
    """Whether ``exc`` says this deployment has no change streams (a standalone server)."""
    return isinstance(exc, OperationFailure) and (
        exc.code in NOT_SUPPORTED or "only supported on replica sets" in str(exc)
    )


async def listen(
    database: Callable[[], AsyncDatabase[dict[str, Any]]], collections: list[str], closed: asyncio.Event
) -> AsyncIterator[None]:
    """Yield on each change to ``collections``; see the module docstring."""
    backoff = _BACKOFF_MIN
    reconnecting = False
    while not closed.is_set():
        try:
            stream = await database().watch(change_pipeline(collections), max_await_time_ms=_POLL_MS)
            async with stream:
                backoff = _BACKOFF_MIN
                if reconnecting:
                    reconnecting = False
                    yield None
                while not closed.is_set() and stream.alive:
                    if await stream.try_next() is not None:
                        yield None
        except (PyMongoError, OSError) as exc:
            if isinstance(exc, PyMongoError) and unsupported(exc):
                log.debug("no change streams on this MongoDB deployment: the engine polls")
                await closed.wait()
                return
            level = logging.DEBUG if isinstance(exc, ConnectionFailure | OSError) else logging.WARNING
            log.log(level, "change stream failed (%s); retrying in %.1fs", type(exc).__name__, backoff)
            reconnecting = True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(closed.wait(), backoff)
            backoff = min(backoff * 2, _BACKOFF_MAX)


__all__ = ["change_pipeline", "listen", "unsupported"]
