"""Wake-ups over Redis pub/sub that survive a lost connection."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = logging.getLogger("backbeat.stores.redis")

_POLL = 1.0
"""Seconds one read waits, so a closed store ends the iterator promptly."""
_BACKOFF_MIN, _BACKOFF_MAX = 0.1, 5.0


async def _close(pubsub: PubSub) -> None:
    # Called through a typed name: redis-py's `aclose` is unannotated in some releases, typed in others.
    close: Callable[[], Awaitable[None]] = pubsub.aclose
    await close()


class _Reconnects:
    """Notices the client library quietly reconnecting (and resubscribing) the connection."""

    def __init__(self) -> None:
        self.seen = False

    def on_connect(self, connection: Any) -> None:
        self.seen = True


async def listen(
    client: Callable[[], Redis], channels: Sequence[str], closed: asyncio.Event
) -> AsyncIterator[None]:
    """Yield on each message of ``channels``, and once after every reconnection.

    Connection errors are retried with backoff, never raised; the iterator ends when
    ``closed`` is set.
    """
    backoff = _BACKOFF_MIN
    reconnecting = False
    while not closed.is_set():
        reconnects = _Reconnects()
        pubsub = None
        try:
            pubsub = client().pubsub()
            await pubsub.subscribe(*channels)
            assert pubsub.connection is not None
            pubsub.connection.register_connect_callback(reconnects.on_connect)
            backoff = _BACKOFF_MIN
            if reconnecting:
                reconnecting = False
                yield None  # something may have changed while we were not listening
            while not closed.is_set():
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=_POLL)
                if reconnects.seen:
                    reconnects.seen = False
                    yield None
                elif message is not None and message.get("type") == "message":
                    yield None
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            log.debug("wake-up subscription lost (%r); reconnecting in %.1fs", exc, backoff)
            reconnecting = True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(closed.wait(), backoff)
            backoff = min(backoff * 2, _BACKOFF_MAX)
        finally:
            if pubsub is not None:
                if pubsub.connection is not None:
                    pubsub.connection.deregister_connect_callback(reconnects.on_connect)
                with contextlib.suppress(RedisError, OSError):
                    await _close(pubsub)
