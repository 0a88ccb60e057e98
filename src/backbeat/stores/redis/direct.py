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
A call made while another is in flight on the held connection is pipelined behind it when
hiredis reads the replies (up to :data:`PIPELINE` calls at once, answered in the order sent): a
coalesced batch is then built by the client while the one before it runs on the server.
Otherwise it is sent the same way on a connection checked out of the pool for it
(:meth:`DirectScript.borrowed`), read by redis-py.

Calls are bounded by one watchdog timer shared by the calls that follow each other, instead of an
``asyncio.timeout`` per call (its timer handle, scheduled and cancelled each time, cost 5-7 µs).

A call whose connection fails is sent once more on a new one, as the client would; but a reply lost
after the server ran the script must not turn into another outcome, so the second sending carries
the arguments ``resend`` makes of the first (for adds: "an id stored with the very document sent
was written by the first sending").
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import redis.asyncio
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import InvalidResponse, MaxConnectionsError, NoScriptError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.utils import HIREDIS_AVAILABLE

Arg = str | bytes | int
Resend = Callable[[Sequence[Arg]], Sequence[Arg]]
"""The arguments of a call's second sending, made from its first's; made again of them, the same
arguments (a resend on a pool's connection that fails in turn is sent once more)."""
PIPELINE = 2
"""Calls in flight at once on the held connection: while one runs on the server, the client
builds and sends the next (two are enough to keep both busy)."""
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


class ClosedError(Exception):
    """The script's connection was closed (:meth:`DirectScript.close`) with this call in flight,
    or before it began: it was cancelled, or refused, and no connection was made for it."""


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
        self.waiters: deque[asyncio.Future[Any]] = deque()
        """The calls sent and not yet answered, in the order sent (the order of their replies)."""
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
        """Give the transport back to redis-py's protocol. Calls still waiting (pipelined behind
        one that failed or was cancelled) fail as on a lost connection: the connection is about
        to be dropped, and their callers send them again."""
        if not self.lost and self.transport.get_protocol() is self:
            self.transport.set_protocol(self.original)
        self.lost = True
        self._fail(RedisConnectionError("Connection dropped with a call pipelined before this one"))

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
        waiter = loop.create_future()
        self.waiters.append(waiter)
        self.transport.write(packed)
        return waiter

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        waiters = self.waiters
        # with no call waiting, a push between calls is left to be read before the next reply
        while waiters:
            try:
                reply = self.reader.gets()
                while isinstance(reply, self.push):
                    # RESP3 (redis-py's default) lets the server push notifications between
                    # replies (key invalidations, a managed server's maintenance notices):
                    # skipped here, where redis-py's reader would hand them to its handlers
                    reply = self.reader.gets()
            except Exception as exc:  # a protocol error: the connection is not reusable
                # the error of the call whose reply it is; those behind lose theirs with the
                # connection, and are sent again as after a lost one
                waiter = waiters.popleft()
                if not waiter.done():
                    waiter.set_exception(exc)
                self._fail(RedisConnectionError(f"Connection dropped after a protocol error: {exc}"))
                return
            if reply is False:  # the rest of the reply has not come yet
                return
            waiter = waiters.popleft()
            if not waiter.done():  # (a call cancelled meanwhile: its connection is being dropped)
                waiter.set_result(reply)

    def eof_received(self) -> bool | None:
        self._end()
        return self.original.eof_received()  # type: ignore[attr-defined, no-any-return]

    def connection_lost(self, exc: Exception | None) -> None:
        self._end()
        self.original.connection_lost(exc)

    def _end(self) -> None:
        self.lost = self.ended = True
        self._fail(RedisConnectionError("Connection closed by server."))

    def _fail(self, exc: Exception) -> None:
        """Fail every call still waiting with ``exc``."""
        waiters = self.waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_exception(exc)


class DirectScript:
    """``EVALSHA sha 1 key base *args`` on one connection held from ``client``'s pool.

    :attr:`idle` says whether a call may start: none is in flight, or fewer than
    :data:`PIPELINE` are, pipelined (:meth:`borrowed` makes one on a connection of the pool
    meanwhile). Like the client (its ``Retry(NoBackoff(), 1)``), a call whose connection fails is
    sent once more on a new one, with the arguments ``resend`` makes of the first sending's (the
    first call of a pipeline on the held connection connected anew, the others on connections of
    the pool). A call still waiting ``timeout`` seconds after it began raises ``TimeoutError``
    (its connection is closed: the reply may still come; the calls pipelined with it are sent
    again). Once :meth:`close` began, no call connects: one whose connection fails, or that
    begins then, raises :class:`ClosedError`.
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
        self._closed = False
        self._timeout = timeout
        self._calls: dict[asyncio.Task[Any], float] = {}
        """The tasks whose calls are in flight, each with its deadline (in the order sent)."""
        self._timed_out: set[asyncio.Task[Any]] = set()
        """Those the watchdog cancelled."""
        self._watchdog: asyncio.TimerHandle | None = None
        self._watched: asyncio.AbstractEventLoop | None = None
        """The loop the watchdog is on."""
        self._reconnecting = False
        """Whether a failed call is being sent again on the held connection, connected anew."""
        self._replies: _Replies | None = None
        """The protocol reading the held connection's replies, if one does."""
        self._borrowers: set[asyncio.Task[Any]] = set()
        """The tasks whose calls are in flight on connections of the pool (:meth:`borrowed`)."""
        self._shut: set[asyncio.Task[Any]] = set()
        """Those :meth:`close` cancelled."""
        self._drained: asyncio.Future[None] | None = None
        """Answered when the last call in flight on :meth:`close`'s loop ends."""
        self._released_by_last_call = False
        """Whether the last call in flight on the held connection gives it back to the pool (a
        :meth:`close` cancelled before it could)."""

    @property
    def idle(self) -> bool:
        """Whether a call may be sent on the held connection now."""
        if self._closed:
            return False
        if not self._calls:
            return True
        replies, conn = self._replies, self._conn
        return (
            len(self._calls) < PIPELINE
            and replies is not None
            and conn is not None
            and not self._reconnecting
            and replies.reads(conn)
            # (not behind a call of another loop: one that ended with it in flight, or another
            # thread's; failing its waiter here would be answering it from the wrong loop)
            and replies.loop is asyncio.get_running_loop()
        )

    async def __call__(self, args: Sequence[Arg], loop: asyncio.AbstractEventLoop) -> Any:
        """The script's reply, called from ``loop`` (the running one: on Python 3.11 each
        ``get_running_loop()`` is a ``getpid()`` system call, its fork check, so the caller that
        looked it up passes it on).

        Raises:
            redis.exceptions.RedisError: as the client's own call would (``NoScriptError`` when
                the server's script cache was flushed).
            ClosedError: :meth:`close` cancelled the call, or its connection failed after
                :meth:`close` began.
        """
        caller = self._watch(loop)
        try:
            conn = self._conn
            if conn is None:
                conn = self._conn = await self._connected()
            # the held connection's call written here, not in a coroutine of its own: a frame
            # less per add (about 2,000 instructions)
            replies = self._replies
            if replies is None or conn.health_check_interval or not replies.reads(conn):
                replies = await self._reader(conn, loop)
            if replies is None:
                return await self._call_on(conn, args)
            try:
                reply = await replies.call(self._packed(args), loop)
            except RedisConnectionError:
                replies.uninstall()
                return await self._resent(conn, args)
            except BaseException as exc:
                await self._dropped(conn, replies, exc)
                raise
            if conn.health_check_interval:
                conn.next_health_check = loop.time() + conn.health_check_interval
            if isinstance(reply, RedisError):
                return await self._error_reply(conn, args, replies, reply)
            return reply
        except asyncio.CancelledError:
            if caller in self._shut and caller.uncancel() == 0:  # close()'s cancel alone
                raise ClosedError from None
            if caller in self._timed_out and caller.uncancel() == 0:  # the watchdog's cancel alone
                raise TimeoutError from None
            raise
        finally:
            del self._calls[caller]
            self._timed_out.discard(caller)
            if self._closed:
                await self._ended_closing(caller)

    async def _dropped(self, conn: AbstractConnection, replies: _Replies, exc: BaseException) -> None:
        """After a call on the held connection was cancelled (the watchdog, or the caller) or met a
        protocol error: a reply may still come, so the connection is not used again (as redis-py's
        own read does); the calls pipelined behind this one are sent again. Not after a
        ``GeneratorExit``: the call was collected unfinished, its task dropped with the store or
        left on a loop that ended (whose futures cannot be failed nor transports closed), and no
        call follows on that connection."""
        if isinstance(exc, GeneratorExit):
            return
        replies.uninstall()
        await conn.disconnect(nowait=True)

    async def _error_reply(
        self, conn: AbstractConnection, args: Sequence[Arg], replies: _Replies, reply: RedisError
    ) -> Any:
        """After an error reply on the held connection: raise it as redis-py does, or send the call again."""
        if not isinstance(reply, RedisConnectionError):  # (the connection stays usable)
            raise reply
        # an error reply redis-py raises as a lost connection (LOADING: a restarted server reading
        # its data), closing it: sent again the same way
        replies.uninstall()
        return await self._resent(conn, args)

    async def _ended_closing(self, caller: asyncio.Task[Any]) -> None:
        """After ``caller``'s call on the held connection ended, with :meth:`close` begun."""
        self._left(caller)
        if self._released_by_last_call and not self._calls:
            await self._release()

    async def borrowed(self, args: Sequence[Arg]) -> Any:
        """The script's reply, on a connection of the client's pool for this call only (while
        another call holds the store's own), sent again as :meth:`__call__` does; unbounded in
        time (the caller bounds it).

        Raises:
            redis.exceptions.RedisError: as :meth:`__call__`.
            ClosedError: as :meth:`__call__`.
        """
        caller = asyncio.current_task()
        assert caller is not None
        self._borrowers.add(caller)
        try:
            return await self._borrow(args)
        except asyncio.CancelledError:
            if caller in self._shut and caller.uncancel() == 0:
                raise ClosedError from None
            raise
        finally:
            self._borrowers.discard(caller)
            if self._closed:
                self._left(caller)

    async def _borrow(self, args: Sequence[Arg]) -> Any:
        pool = self._client.connection_pool
        conn = await self._connected()
        try:
            return await self._call_on(conn, args)
        except asyncio.CancelledError:
            await conn.disconnect()  # its reply may still come: the connection is not reused
            raise
        finally:
            await pool.release(conn)

    async def _reader(self, conn: AbstractConnection, loop: asyncio.AbstractEventLoop) -> _Replies | None:
        """The protocol that reads the held connection's replies, installed if it can be; ``None``
        for redis-py's path (without hiredis, or with a health check due: that path pings first)."""
        replies = self._replies
        if replies is None or not replies.reads(conn):
            if replies is not None and replies.ended_under(conn):
                # closed by the server while idle (its timeout, a restart): the transport stays
                # half open, so a call on it would wait for a reply that never comes; nothing
                # was sent, so no resend
                await conn.disconnect()
            replies = self._replies = _Replies.install(conn)
        if (
            replies is not None
            and conn.health_check_interval
            and not replies.waiters  # (a call in flight will say whether the connection is alive)
            and loop.time() > conn.next_health_check
        ):
            replies.uninstall()
            replies = self._replies = None
        return replies

    async def _resent(self, conn: AbstractConnection, args: Sequence[Arg]) -> Any:
        """The reply to the resend of ``args`` after the held connection failed: on it, connected
        anew, unless another call of its pipeline does that already (then on one of the pool's).
        """
        if self._reconnecting:
            return await self._resent_borrowed(args)
        self._reconnecting = True
        try:
            return await self._sent_again(conn, args)
        finally:
            self._reconnecting = False

    async def _resent_borrowed(self, args: Sequence[Arg]) -> Any:
        """The reply to the resend of ``args`` on a connection of the pool.

        Raises:
            ResentNoScriptError: the server's script cache was flushed meanwhile (a restart).
        """
        pool = self._client.connection_pool
        conn = await self._connected()
        try:
            return await self._call_on(conn, self._resend(args))
        except NoScriptError as exc:
            if isinstance(exc, ResentNoScriptError):
                raise
            raise ResentNoScriptError(*exc.args) from exc
        except asyncio.CancelledError:
            await conn.disconnect()  # its reply may still come: the connection is not reused
            raise
        finally:
            await pool.release(conn)

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
        if self._closed:
            raise ClosedError
        try:
            await conn.connect()  # type: ignore[no-untyped-call]
        except (RedisConnectionError, RedisTimeoutError):  # its handshake's reply lost in turn
            await conn.disconnect()
            if self._closed:
                raise ClosedError from None
            await conn.connect()  # type: ignore[no-untyped-call]
        await conn.send_packed_command(self._packed(self._resend(args)))
        try:
            return await conn.read_response()
        except NoScriptError as exc:
            raise ResentNoScriptError(*exc.args) from exc

    def _packed(self, args: Sequence[Arg]) -> bytes:
        # bulk() written out: a comprehension's frame and a call per argument cost a lone add
        # about 1,500 instructions
        parts = [b"*%d\r\n%b" % (5 + len(args), self._head)]
        for arg in args:
            data = arg if isinstance(arg, bytes) else str(arg).encode()
            parts.append(b"$%d\r\n%b\r\n" % (len(data), data))
        return b"".join(parts)

    def _watch(self, loop: asyncio.AbstractEventLoop) -> asyncio.Task[Any]:
        """Put the current task's call on ``loop`` (the running one) under the watchdog (armed if
        none is)."""
        caller = asyncio.current_task(loop)
        assert caller is not None
        deadline = self._calls[caller] = loop.time() + self._timeout
        if self._watchdog is None or self._watched is not loop:
            self._watchdog, self._watched = loop.call_at(deadline, self._expire, loop), loop
        return caller

    def _expire(self, loop: asyncio.AbstractEventLoop) -> None:
        """Cancel the calls in flight that passed their deadlines, then wait for the next call's
        deadline; an idle watchdog is not armed again until the next call."""
        if loop is not self._watched:
            return  # a watchdog of a loop the store no longer runs on
        self._watchdog = None
        now = loop.time()
        for caller, deadline in list(self._calls.items()):  # the earliest deadline first
            if caller.get_loop() is not loop or caller in self._timed_out:
                continue  # (a call left on an ended loop: nothing to cancel there)
            if now < deadline - _EARLY:
                self._watchdog = loop.call_at(deadline, self._expire, loop)
                return
            self._timed_out.add(caller)
            caller.cancel()

    async def close(self, grace: float) -> None:
        """Let the calls in flight on the running loop end, for ``grace`` seconds at most, then
        cancel those left (each raises :class:`ClosedError`) and give the connection back to the
        pool. From the start no call connects: a new one, or one whose connection fails, raises
        :class:`ClosedError` (the calls of an ended loop are left as they are). Cancelled while it
        waits, it leaves the calls to end and the last of them gives the connection back."""
        self._closed = True
        loop = asyncio.get_running_loop()
        try:
            if self._live(loop):
                self._drained = loop.create_future()
                done, _ = await asyncio.wait([self._drained], timeout=grace)
                if not done:
                    for caller in self._live(loop):
                        self._shut.add(caller)
                        caller.cancel()
                    # each cancelled call drops its connection, bounded by the socket's connect timeout
                    await self._drained
        except asyncio.CancelledError:
            # the store opens again without this script: the pool must get its connection back
            if self._calls:
                self._released_by_last_call = True
            else:
                await self._release()
            raise
        await self._release()

    def abandon(self) -> None:
        """Drop the held connection without a word to its loop (one that ended): the next call
        on this script connects through its pool, which belongs to that loop as well, so the
        script is not called again either."""
        self._closed = True
        self._conn = self._replies = None

    def _live(self, loop: asyncio.AbstractEventLoop) -> list[asyncio.Task[Any]]:
        """The tasks of ``loop`` whose calls are in flight."""
        return [caller for caller in (*self._calls, *self._borrowers) if caller.get_loop() is loop]

    def _left(self, caller: asyncio.Task[Any]) -> None:
        """After ``caller``'s call ended, with :meth:`close` begun: answer it when none is left."""
        self._shut.discard(caller)
        drained = self._drained
        if drained is not None and not drained.done() and not self._live(drained.get_loop()):
            drained.set_result(None)

    async def _connected(self) -> AbstractConnection:
        """A connection of the pool, tried once more on a new one when connecting failed: nothing
        was sent on it. redis-py before 8 does not retry a handshake (``HELLO``, ``CLIENT
        SETINFO``) whose reply was lost, so one lost reply would fail the call; :meth:`_sent_again`
        connects the same way. A pool with no free connection (``MaxConnectionsError``, a
        :class:`~backbeat.stores.redis.pool.PoolTimeoutError` after its wait) is not asked again:
        no connection failed, and a second wait would outlast the call's bound.

        Raises:
            ClosedError: :meth:`close` began (before, or while connecting).
        """
        pool = self._client.connection_pool
        conn: AbstractConnection
        if self._closed:
            raise ClosedError
        try:
            conn = await pool.get_connection()  # type: ignore[no-untyped-call]
        except MaxConnectionsError:  # every connection in use (waited for, or not): none failed
            raise
        except (RedisConnectionError, RedisTimeoutError):
            if self._closed:
                raise ClosedError from None
            conn = await pool.get_connection()  # type: ignore[no-untyped-call]
        return conn

    async def _release(self) -> None:
        conn, self._conn = self._conn, None
        replies, self._replies = self._replies, None
        if replies is not None:
            replies.uninstall()
        if conn is not None:
            await self._client.connection_pool.release(conn)
