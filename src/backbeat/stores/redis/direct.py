"""One script called on a connection of its own: a single add in one round trip without redis-py's
per-command layers.

Through the client, each ``EVALSHA`` checks a connection out of the pool and back in (a lock and
observability hooks each way), packs every argument through the encoder and runs under the retry
wrapper: about 90 µs of CPU per call here, against 50 µs for the same round trip on a connection
held (``python -m bench.profile_adds``). So the store holds one pooled connection for its adds and
sends them with the command's fixed head packed once. With hiredis installed, the held connection's
transport hands its bytes to a protocol of this module (:class:`_Replies`) that parses them with a
``hiredis.Reader`` and answers the call's future: one write and one future, instead of redis-py's
stream writer, drain, stream reader and parser layers. Without hiredis, or when the client's
health check is due (redis-py's path pings first), the reply is read by redis-py's own parser.
A call that finds the connection busy (another add in flight) is sent the same way on a
connection checked out of the pool for it (:meth:`DirectScript.borrowed`), read by redis-py.

Calls are bounded by one watchdog timer shared by the calls that follow each other, instead of an
``asyncio.timeout`` per call (its timer handle, scheduled and cancelled each time, cost 5-7 µs).

A call whose connection fails is sent once more on a new one, as the client would; but a reply lost
after the server ran the script must not turn into another outcome, so the second sending carries
the arguments ``resend`` makes of the first (for adds: "an id stored with the very document sent
was written by the first sending").
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import redis.asyncio
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import InvalidResponse, NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.utils import HIREDIS_AVAILABLE

Arg = str | bytes | int
Resend = Callable[[Sequence[Arg]], Sequence[Arg]]
"""The arguments of a call's second sending, made from its first's."""
_EARLY = 0.001
"""Seconds a timer may fire before its time (the loop's clock resolution, and some)."""


def bulk(value: Arg) -> bytes:
    """One argument as a RESP bulk string."""
    data = value if isinstance(value, bytes) else str(value).encode()
    return b"$%d\r\n%b\r\n" % (len(data), data)


class ResentNoScriptError(NoScriptError):
    """The script was missing from the server's cache when sent again after a lost reply (a
    restarted server forgets its scripts): its first sending may have run, so whoever loads it
    and calls it once more must send what ``resend`` makes of the arguments, not them."""


class _Replies(asyncio.Protocol):
    """The protocol of the held connection's transport while the store holds it: each reply is
    parsed by a ``hiredis.Reader`` and handed to the call waiting for it. The end of the connection
    is passed on to redis-py's own protocol, so the connection's ``disconnect`` sees it as usual.
    """

    def __init__(self, conn: AbstractConnection, transport: asyncio.Transport, push: type) -> None:
        import hiredis

        self.push = push
        """hiredis's type of RESP3 push notifications, which are no call's reply."""
        self.conn = conn
        self.transport = transport
        self.original = transport.get_protocol()
        parse_error = conn._parser.parse_error  # redis-py's error classes (NoScriptError, ...)
        self.reader = hiredis.Reader(protocolError=InvalidResponse, replyError=parse_error)
        self.waiter: asyncio.Future[Any] | None = None
        self.lost = False
        self.ended = False
        """Whether the connection ended while this protocol read it (redis-py's reader read nothing)."""
        self.loop = asyncio.get_running_loop()
        transport.set_protocol(self)

    @classmethod
    def install(cls, conn: AbstractConnection) -> _Replies | None:
        """Read ``conn``'s replies with a new protocol; ``None`` without hiredis, or when
        ``conn`` is not connected (redis-py's path connects it)."""
        # redis-py's private attributes: a release without them keeps its own path
        writer = getattr(conn, "_writer", None)
        if not HIREDIS_AVAILABLE or writer is None or getattr(conn, "_reader", None) is None:
            return None
        transport = getattr(writer, "transport", None)
        if not isinstance(transport, asyncio.Transport) or transport.is_closing():
            return None
        if not callable(getattr(getattr(conn, "_parser", None), "parse_error", None)):
            return None
        import hiredis

        push = getattr(hiredis, "PushNotification", None)
        if not isinstance(push, type):  # hiredis < 3.2 reads a push as a plain list, like a reply
            return None
        return cls(conn, transport, push)

    def reads(self, conn: AbstractConnection) -> bool:
        """Whether this protocol still reads ``conn`` (not after a reconnection or a loss)."""
        writer = conn._writer
        return not self.lost and writer is not None and writer.transport is self.transport

    def ended_under(self, conn: AbstractConnection) -> bool:
        """Whether ``conn``'s transport is still the one that ended under this protocol: redis-py,
        whose reader heard nothing of it, takes the connection for open."""
        writer = conn._writer
        return self.ended and writer is not None and writer.transport is self.transport

    def uninstall(self) -> None:
        """Give the transport back to redis-py's protocol (nothing is pending between calls)."""
        if not self.lost and self.transport.get_protocol() is self:
            self.transport.set_protocol(self.original)
        self.lost = True

    def call(self, packed: bytes, loop: asyncio.AbstractEventLoop) -> asyncio.Future[Any]:
        """Send ``packed`` from ``loop`` (the running one); the future of its reply (an error reply
        as its exception, not raised). A plain function returning the future: a coroutine around
        it would be one more frame.

        Raises:
            redis.exceptions.ConnectionError: the connection ended (the future's error, once sent).
        """
        if self.lost or loop is not self.loop or self.transport.is_closing():
            # (a transport of a loop that ended: the caller's path connects anew)
            raise RedisConnectionError("Connection closed by the server before write")
        waiter = self.waiter = loop.create_future()
        self.transport.write(packed)
        return waiter

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        waiter = self.waiter
        if waiter is None or waiter.done():
            # a push between calls (read before the next call's reply), or a call cancelled
            # meanwhile (its connection is being dropped)
            return
        try:
            reply = self.reader.gets()
            while isinstance(reply, self.push):
                # RESP3 (redis-py's default) lets the server push notifications between replies
                # (key invalidations, a managed server's maintenance notices): skipped here,
                # where redis-py's reader would hand them to its handlers
                reply = self.reader.gets()
        except Exception as exc:  # a protocol error: the connection is not reusable
            self.waiter = None
            waiter.set_exception(exc)
            return
        if reply is not False:
            self.waiter = None
            waiter.set_result(reply)

    def eof_received(self) -> bool | None:
        self._end()
        return self.original.eof_received()  # type: ignore[attr-defined, no-any-return]

    def connection_lost(self, exc: Exception | None) -> None:
        self._end()
        self.original.connection_lost(exc)

    def _end(self) -> None:
        self.lost = self.ended = True
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(RedisConnectionError("Connection closed by server."))


class DirectScript:
    """``EVALSHA sha 1 key base *args`` on one connection held from ``client``'s pool.

    One call at a time: :attr:`idle` says whether a call may start (:meth:`borrowed` makes one
    on a connection of the pool meanwhile). Like the client (its ``Retry(NoBackoff(), 1)``), a
    call whose connection fails is sent once more on a new one, with the arguments ``resend``
    makes of the first sending's. A call still waiting ``timeout`` seconds after it began raises
    ``TimeoutError`` (its connection is closed: the reply may still come).
    """

    def __init__(
        self,
        client: redis.asyncio.Redis,
        sha: str,
        key: str,
        base: str,
        *,
        timeout: float,
        resend: Resend = lambda args: args,
    ) -> None:
        self._client = client
        self._resend = resend
        self._head = b"".join(bulk(part) for part in ("EVALSHA", sha, "1", key, base))
        self._conn: AbstractConnection | None = None
        self._busy = False
        self._closed = False
        self._timeout = timeout
        self._caller: asyncio.Task[Any] | None = None
        """The task whose call is in flight."""
        self._deadline = 0.0
        self._watchdog: asyncio.TimerHandle | None = None
        self._watched: asyncio.AbstractEventLoop | None = None
        """The loop the watchdog is on."""
        self._timed_out = False
        self._replies: _Replies | None = None
        """The protocol reading the held connection's replies, if one does."""

    @property
    def idle(self) -> bool:
        return not self._busy and not self._closed

    async def __call__(self, args: Sequence[Arg]) -> Any:
        """The script's reply.

        Raises:
            redis.exceptions.RedisError: as the client's own call would (``NoScriptError`` when
                the server's script cache was flushed).
        """
        self._busy = True
        # the loop is looked up once per call: on Python 3.11 each get_running_loop() is a
        # getpid() system call (its fork check)
        loop = asyncio.get_running_loop()
        caller = self._watch(loop)
        try:
            conn = self._conn
            if conn is None:
                conn = self._conn = await _connected(self._client.connection_pool)
            return await self._call_held(conn, args, loop)
        except asyncio.CancelledError:
            if self._timed_out and caller.uncancel() == 0:  # the watchdog's cancel, nobody else's
                raise TimeoutError from None
            raise
        finally:
            self._caller = None
            self._busy = False
            if self._closed:
                await self._release()

    async def borrowed(self, args: Sequence[Arg]) -> Any:
        """The script's reply, on a connection of the client's pool for this call only (while
        another call holds the store's own), sent again as :meth:`__call__` does; unbounded in
        time (the caller bounds it).

        Raises:
            redis.exceptions.RedisError: as :meth:`__call__`.
        """
        pool = self._client.connection_pool
        conn = await _connected(pool)
        try:
            return await self._call_on(conn, args)
        except asyncio.CancelledError:
            await conn.disconnect()  # its reply may still come: the connection is not reused
            raise
        finally:
            await pool.release(conn)

    async def _call_held(
        self, conn: AbstractConnection, args: Sequence[Arg], loop: asyncio.AbstractEventLoop
    ) -> Any:
        """A call on the held connection, its reply read by :class:`_Replies` when it can be;
        a health check due is left to redis-py's path (which pings first)."""
        replies = self._replies
        if replies is None or not replies.reads(conn):
            if replies is not None and replies.ended_under(conn):
                # closed by the server while idle (its timeout, a restart): the transport stays
                # half open, so a call on it would wait for a reply that never comes; nothing
                # was sent, so no resend
                await conn.disconnect()
            replies = self._replies = _Replies.install(conn)
        health = conn.health_check_interval
        if replies is not None and health and loop.time() > conn.next_health_check:
            replies.uninstall()
            replies = self._replies = None
        if replies is None:
            return await self._call_on(conn, args)
        try:
            reply = await replies.call(self._packed(args), loop)
        except RedisConnectionError:
            replies.uninstall()
            return await self._sent_again(conn, args)
        except BaseException:
            # cancelled (the watchdog, or the caller), or a protocol error: a reply may still come,
            # so the connection is not used again (as redis-py's own read does)
            replies.uninstall()
            await conn.disconnect(nowait=True)
            raise
        if health:
            conn.next_health_check = loop.time() + health
        if isinstance(reply, ResponseError):  # raised as redis-py does; the connection stays usable
            raise reply
        if isinstance(reply, RedisConnectionError):
            # an error reply redis-py raises as a lost connection (LOADING: a restarted server
            # reading its data), closing it: sent again the same way
            replies.uninstall()
            return await self._sent_again(conn, args)
        return reply

    async def _call_on(self, conn: AbstractConnection, args: Sequence[Arg]) -> Any:
        try:
            await conn.send_packed_command(self._packed(args))
            return await conn.read_response()
        except (RedisConnectionError, RedisTimeoutError):
            return await self._sent_again(conn, args)

    async def _sent_again(self, conn: AbstractConnection, args: Sequence[Arg]) -> Any:
        """The reply to the resend of ``args`` on ``conn`` connected anew: the server may have run
        the first sending, its reply is what was lost.

        Raises:
            ResentNoScriptError: the server's script cache was flushed meanwhile (a restart).
        """
        await conn.disconnect()
        try:
            await conn.connect()  # type: ignore[no-untyped-call]
        except (RedisConnectionError, RedisTimeoutError):  # its handshake's reply lost in turn
            await conn.disconnect()
            await conn.connect()  # type: ignore[no-untyped-call]
        await conn.send_packed_command(self._packed(self._resend(args)))
        try:
            return await conn.read_response()
        except NoScriptError as exc:
            raise ResentNoScriptError(*exc.args) from exc

    def _packed(self, args: Sequence[Arg]) -> bytes:
        return b"*%d\r\n%b%b" % (5 + len(args), self._head, b"".join([bulk(arg) for arg in args]))

    def _watch(self, loop: asyncio.AbstractEventLoop) -> asyncio.Task[Any]:
        """Put the current task's call on ``loop`` (the running one) under the watchdog (armed if
        none is)."""
        caller = asyncio.current_task(loop)
        assert caller is not None
        self._caller, self._deadline, self._timed_out = caller, loop.time() + self._timeout, False
        if self._watchdog is None or self._watched is not loop:
            self._watchdog, self._watched = loop.call_at(self._deadline, self._expire, loop), loop
        return caller

    def _expire(self, loop: asyncio.AbstractEventLoop) -> None:
        """Cancel the call in flight if it passed its deadline, else wait for that deadline; an
        idle watchdog is not armed again until the next call."""
        if loop is not self._watched:
            return  # a watchdog of a loop the store no longer runs on
        self._watchdog = None
        caller = self._caller
        if caller is None:
            return
        if loop.time() >= self._deadline - _EARLY:
            self._timed_out = True
            caller.cancel()
        else:
            self._watchdog = loop.call_at(self._deadline, self._expire, loop)

    async def close(self) -> None:
        """Give the connection back to the pool (once the call in flight, if any, ends)."""
        self._closed = True
        if not self._busy:
            await self._release()

    async def _release(self) -> None:
        conn, self._conn = self._conn, None
        replies, self._replies = self._replies, None
        if replies is not None:
            replies.uninstall()
        if conn is not None:
            await self._client.connection_pool.release(conn)


async def _connected(pool: redis.asyncio.ConnectionPool) -> AbstractConnection:
    """A connection of ``pool``, tried once more on a new one when connecting failed: nothing
    was sent on it. redis-py before 8 does not retry a handshake (``HELLO``, ``CLIENT
    SETINFO``) whose reply was lost, so one lost reply would fail the call; :meth:`_sent_again`
    connects the same way."""
    conn: AbstractConnection
    try:
        conn = await pool.get_connection()  # type: ignore[no-untyped-call]
    except (RedisConnectionError, RedisTimeoutError):
        conn = await pool.get_connection()  # type: ignore[no-untyped-call]
    return conn
