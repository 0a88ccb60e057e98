"""The client of a Redis store: connecting, scripts, and translating driver errors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis.asyncio
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry  # the asyncio client awaits its retry: the sync one never retries
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import MaxConnectionsError, NoScriptError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from backbeat.errors import ConfigurationError, StoreClosedError, StoreError, StoreUnavailableError
from backbeat.stores.redis import wakeups
from backbeat.stores.redis.direct import ClosedError, DirectScript, ResentNoScriptError
from backbeat.stores.redis.eviction import warn_if_evicting
from backbeat.stores.redis.keys import Keys
from backbeat.stores.redis.pool import WaitingConnectionPool
from backbeat.stores.redis.scripts import Scripts

DEFAULT_OPTIONS: dict[str, Any] = {
    "socket_connect_timeout": 3.0,
    # Store calls are bounded by CALL_TIMEOUT instead: with a socket_timeout, redis-py sends every
    # command under asyncio.wait_for, which on Python 3.11 runs it in a task of its own (about a
    # quarter of a single add's CPU, by python -m bench.profile_adds).
    "socket_timeout": None,
    # One quick retry mends a pooled connection the server dropped (a restart); more would
    # re-run scripts that may have run, and the engine retries with backoff anyway.
    "retry": Retry(NoBackoff(), 1),
}


OPEN_TIMEOUT = 5.0
"""Seconds ``open`` waits for the server's first answers (PING, the scripts)."""
CALL_TIMEOUT = 10.0
"""Seconds one store call may wait for the server before it counts as unavailable."""
CLOSE_TIMEOUT = 5.0
"""Seconds ``close`` waits for the adds in flight before it cancels them."""
MIN_POOL_FOR_ADDS = 4
"""The fewest connections a client's pool needs before the store's adds hold one of them."""


def split_prefix(url: str) -> tuple[str, str | None]:
    """``url`` without its ``?prefix=`` (backbeat's, not redis-py's), and that prefix."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    prefixes = [value for key, value in query if key == "prefix"]
    if not prefixes:
        return url, None
    rest = urlencode([(key, value) for key, value in query if key != "prefix"])
    return urlunsplit(parts._replace(query=rest)), prefixes[-1]


def redact(url: str) -> str:
    """``url`` without its password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname or ''}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


Client = redis.asyncio.Redis | RedisCluster
"""A client of one Redis server, or of a Redis Cluster (a shard of a sharded store)."""


class Connection:
    """One store's client (made from the URL, or given) and its registered scripts.

    With ``acknowledged``, scripts that write wait for a replica (``durability="replica"``).

    The client, its connections and the held add connection belong to the event loop the store
    was opened on. A call from another loop (a second ``asyncio.run``) starts afresh there: it
    drops them without awaiting anything of the old loop (which has usually ended: its
    sockets are closed when collected) and opens the store again, with a new client unless one
    was given (a given client must itself work on the new loop).
    """

    def __init__(
        self,
        url: str,
        keys: Keys,
        client: Client | None,
        options: dict[str, Any],
        *,
        acknowledged: bool = False,
    ) -> None:
        if options.get("decode_responses"):
            raise ConfigurationError("the Redis store reads raw bytes: do not set decode_responses")
        self.url = url
        self.keys = keys
        self.acknowledged = acknowledged
        self._options = {**DEFAULT_OPTIONS, **options}
        self._own_client = client is None
        self._client = client
        self._scripts: Scripts | None = None
        self._direct: DirectScript | None = None
        """The add script sent by the store itself (not on Redis Cluster, nor acknowledged)."""
        self._hold_for_adds = False
        """Whether adds keep a connection of the pool (not from a pool of a few connections)."""
        self._closed = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        """The loop the store is open on, or its client bound to (``None`` when closed)."""
        self._client_adds: set[asyncio.Task[Any]] = set()
        """The tasks whose adds are in flight through the client (Redis Cluster, or writes
        acknowledged by a replica: no :class:`DirectScript` bounds them)."""
        self._cut_adds: set[asyncio.Task[Any]] = set()
        """Those :meth:`close` cancelled."""
        self._client_adds_ended: asyncio.Future[None] | None = None
        """Answered when the last of :attr:`_client_adds` ends while the store closes."""

    @contextmanager
    def errors(self) -> Iterator[None]:
        """Raise driver errors as :class:`StoreUnavailableError` or :class:`StoreError`."""
        try:
            yield
        except (RedisError, OSError) as exc:
            raise self._translated(exc) from exc

    def _translated(self, exc: RedisError | OSError) -> StoreError:
        """A driver error as the store's: :class:`StoreUnavailableError` when the server cannot be
        reached (or timed out) or its client's pool had no free connection (ours after its wait,
        or redis-py's plain pool of a client given by the user: both a ``MaxConnectionsError``,
        which redis-py makes a ``ConnectionError``, though no connection failed), else
        :class:`StoreError`."""
        if isinstance(exc, MaxConnectionsError):
            url = redact(self.url)
            return StoreUnavailableError(f"Redis at {url}: the client's pool had no free connection: {exc}")
        if isinstance(exc, (RedisConnectionError, RedisTimeoutError, OSError)):
            return StoreUnavailableError(f"Redis at {redact(self.url)} is unavailable: {exc}")
        return StoreError(f"Redis at {redact(self.url)} failed: {exc}")

    @asynccontextmanager
    async def calls(self) -> AsyncIterator[None]:
        """:meth:`errors`, and at most :data:`CALL_TIMEOUT` for the calls made inside."""
        with self.errors():
            try:
                async with asyncio.timeout(CALL_TIMEOUT):
                    yield
            except TimeoutError:
                raise StoreUnavailableError(
                    f"Redis at {redact(self.url)} did not answer within {CALL_TIMEOUT:g} s"
                ) from None

    @property
    def client(self) -> Client:
        if self._loop is not None and self._loop is not _running_loop():
            self._drop()
        if self._client is None:
            self._client = _new_client(self.url, self._options)
        return self._client

    async def open(self) -> None:
        client = self.client
        if isinstance(client, RedisCluster):
            settings = client.get_connection_kwargs()
        else:
            settings = client.connection_pool.connection_kwargs
        if settings.get("decode_responses"):
            raise ConfigurationError(
                "the Redis store reads raw bytes: give it a client without decode_responses"
            )
        self._closed.clear()
        with self.errors():
            try:
                # a server that accepts but never answers must not hold start() for long
                async with asyncio.timeout(OPEN_TIMEOUT):
                    await client.ping()
                    await warn_if_evicting(client, redact(self.url))
                    scripts = Scripts(client, self.keys.base, self.keys.tasks, acknowledged=self.acknowledged)
                    await scripts.load()
            except TimeoutError:
                raise StoreUnavailableError(
                    f"Redis at {redact(self.url)} accepted a connection but did not answer PING "
                    f"within {OPEN_TIMEOUT:g} s"
                ) from None
        self._scripts = scripts
        self._loop = asyncio.get_running_loop()
        if self._direct is None and isinstance(client, redis.asyncio.Redis) and not self.acknowledged:
            # (not when writes wait for a replica: their WAIT goes with the script)
            self._hold_for_adds = (client.connection_pool.max_connections or 0) >= MIN_POOL_FOR_ADDS
            self._direct = DirectScript(
                client,
                scripts.sha("add"),
                self.keys.tasks,
                self.keys.base,
                timeout=CALL_TIMEOUT,
                resend=add_resent,
            )

    async def close(self) -> None:
        """Close the store: the adds in flight may end within :data:`CLOSE_TIMEOUT`, then those
        left raise :class:`StoreClosedError` (so do adds made meanwhile); no add connects anew."""
        if self._loop is not None and self._loop is not asyncio.get_running_loop():
            self._drop()  # (nothing of the old loop can be awaited here)
        self._closed.set()
        direct = self._direct
        try:
            if direct is not None:
                with self.errors():
                    await direct.close(CLOSE_TIMEOUT)
            await self._end_client_adds()
        finally:  # (also when the close is cancelled: the next call opens the store again)
            self._scripts = self._direct = None
        if self._own_client and self._client is not None:
            client, self._client = self._client, None
            with self.errors():
                await client.aclose()
        # only now: a close cancelled before keeps the loop its client is bound to, so that a
        # call from another loop drops that client instead of using it there
        self._loop = None

    def _drop(self) -> None:
        """Forget the client (if the store's own), the scripts and the held connection of the
        loop the store was open on, without awaiting anything of it: the next call opens the
        store again on its own loop."""
        self._loop = self._scripts = None
        direct, self._direct = self._direct, None
        if direct is not None:
            direct.abandon()
        if self._own_client:
            self._client = None
        self._client_adds, self._cut_adds = set(), set()  # (the old loop's: never to end here)
        self._closed = asyncio.Event()  # (an Event is bound to the first loop that waits on it)

    async def _open_on(self, loop: asyncio.AbstractEventLoop) -> None:
        """Open the store on ``loop`` (the running one), dropping what an earlier loop held."""
        if self._loop is not None and self._loop is not loop:
            self._drop()
        await self.open()

    async def ready(self) -> Client:
        """The client of an open store (opening it first if needed)."""
        loop = asyncio.get_running_loop()
        if self._scripts is None or self._loop is not loop:
            await self._open_on(loop)
        return self.client

    async def run(self, name: str, *args: Any) -> Any:
        """Call one script (opening the store first if needed)."""
        loop = asyncio.get_running_loop()
        if self._scripts is None or self._loop is not loop:
            await self._open_on(loop)
            assert self._scripts is not None
        async with self.calls():
            return await self._scripts(name, *args)

    async def add(self, *args: Any) -> Any:
        """Call the add script, on the store's own connection when no other add holds it, else on
        one of the pool's; either way a sending repeated after a lost reply is told so."""
        # the loop is looked up once per add (see DirectScript.__call__)
        loop = asyncio.get_running_loop()
        if self._scripts is None or self._loop is not loop:
            await self._open_on(loop)
        direct = self._direct
        if direct is None:  # Redis Cluster, or writes acknowledged by a replica
            return await self._client_add(args)
        # the driver's errors translated as errors() does, written out: a generator-based context
        # manager costs a lone add about 10,000 instructions (contextlib runs in Python)
        try:
            if direct.idle and self._hold_for_adds:
                return await direct(args, loop)  # bounded by CALL_TIMEOUT as well
            async with asyncio.timeout(CALL_TIMEOUT):
                return await direct.borrowed(args)
        except NoScriptError as exc:
            # the server's script cache was flushed (nothing ran): the client loads it again,
            # told of a first sending that may have run if this was its resend
            if isinstance(exc, ResentNoScriptError):
                args = tuple(add_resent(args))
        except TimeoutError:  # (an OSError: before the translation's clause)
            raise StoreUnavailableError(
                f"Redis at {redact(self.url)} did not answer within {CALL_TIMEOUT:g} s"
            ) from None
        except ClosedError:
            raise self._closed_error() from None
        except (RedisError, OSError) as exc:
            raise self._translated(exc) from exc
        return await self.run("add", *args)

    async def _client_add(self, args: Sequence[Any]) -> Any:
        """The add script sent through the client, bounded by :meth:`close` as the adds of the
        held connection are: refused while the store closes, cancelled when left after the bound.

        Raises:
            StoreClosedError: :meth:`close` began before it, or cancelled it.
        """
        if self._closed.is_set():
            raise self._closed_error()
        caller = asyncio.current_task()
        assert caller is not None and self._scripts is not None
        self._client_adds.add(caller)
        try:
            async with self.calls():
                return await self._scripts.resending("add", args, add_resent)
        except asyncio.CancelledError:
            if caller in self._cut_adds and caller.uncancel() == 0:  # close()'s cancel alone
                raise self._closed_error() from None
            raise
        finally:
            self._client_adds.discard(caller)
            self._cut_adds.discard(caller)
            ended = self._client_adds_ended
            if not self._client_adds and ended is not None and not ended.done():
                ended.set_result(None)

    async def _end_client_adds(self) -> None:
        """Let the adds in flight through the client end, for :data:`CLOSE_TIMEOUT` at most, then
        cancel those left (each raises :class:`StoreClosedError`)."""
        if not self._client_adds:
            return
        ended = self._client_adds_ended = asyncio.get_running_loop().create_future()
        try:
            done, _ = await asyncio.wait([ended], timeout=CLOSE_TIMEOUT)
            if not done:
                for caller in self._client_adds:
                    self._cut_adds.add(caller)
                    caller.cancel()
                await ended
        finally:
            self._client_adds_ended = None

    def _closed_error(self) -> StoreClosedError:
        return StoreClosedError(
            f"the Redis store at {redact(self.url)} (prefix {self.keys.prefix!r}) was closed with "
            f"this add in flight (not ended within {CLOSE_TIMEOUT:g} s), or closing when it began: "
            "it may or may not have been stored"
        )

    def wakeups(self) -> AsyncIterator[None]:
        return wakeups.listen(self._server_client, [self.keys.wakeup], self._closed)

    def _server_client(self) -> redis.asyncio.Redis:
        client = self.client
        if isinstance(client, RedisCluster):
            raise TypeError("a shard on Redis Cluster has no wake-ups of its own: its sharded store listens")
        return client


def _new_client(url: str, options: dict[str, Any]) -> redis.asyncio.Redis:
    """A client of a pool of its own. A pool of ``max_connections`` makes a call wait for a free
    connection (up to half of :data:`CALL_TIMEOUT`) instead of failing with "Too many connections": a
    worker's wake-ups hold one for good, its claims, renewals and completions come at once, and a
    burst of adds may take the rest. (The URL's ``?max_connections=`` sets it too: redis-py reads
    it, and it wins over the option.)"""
    in_url = any(key == "max_connections" for key, _ in parse_qsl(urlsplit(url).query))
    if options.get("max_connections") is None and not in_url:
        return redis.asyncio.from_url(url, **options)
    # the client's own options taken out as from_url does: its pool would pass them to each
    # connection, which refuses them
    options = dict(options)
    single = bool(options.pop("single_connection_client", False))
    auto_close = options.pop("auto_close_connection_pool", None) is not False
    # the wait ends before the call's bound, so that a starved pool says so instead of "did not
    # answer", and a call that got its connection late still has time for the server
    pool = WaitingConnectionPool.from_url(url, timeout=CALL_TIMEOUT / 2, **options)
    client = redis.asyncio.Redis(connection_pool=pool, single_connection_client=single)
    client.auto_close_connection_pool = auto_close
    return client


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:  # (no loop runs: a client made outside one)
        return None


def add_resent(args: Sequence[Any]) -> Sequence[Any]:
    """The arguments of an add sent again after its reply was lost: ``add.lua`` then takes an id
    stored with the very document sent for its own earlier write (a replacing add may repeat)."""
    return ["r", *args[1:]] if args[0] == "0" else args
