"""The client of a MongoDB store: its URL, opening on first use, and translated errors."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple
from urllib.parse import unquote

from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError

from backbeat.errors import ConfigurationError
from backbeat.stores._common import Signal
from backbeat.stores.mongodb import wakeups
from backbeat.stores.mongodb.errors import map_error, redact, translated
from backbeat.stores.mongodb.indexes import HISTORY_TTL, Collections, Names, ensure_indexes

DEFAULT_DATABASE = "backbeat"
DEFAULT_COLLECTION = "background_jobs"
DEFAULT_OPTIONS: dict[str, Any] = {
    "serverSelectionTimeoutMS": 5000,
    "connectTimeoutMS": 3000,
    "appname": "backbeat",
}
"""Client options used unless the URL or the caller sets them (PyMongo's 30 s server
selection would hold a claim loop for too long when the server is down)."""


class ParsedUrl(NamedTuple):
    """A store URL split into what the driver takes and what the store takes."""

    client_url: str
    """The URL without backbeat's own ``collection`` option."""
    database: str | None
    """The URL's path (``mongodb://host/<database>``), if any."""
    collection: str | None
    """``?collection=<name>``, if given."""
    secrets: tuple[str, ...]
    """The password (raw and decoded), to mask in messages."""


def parse_url(url: str) -> ParsedUrl:
    """Split a ``mongodb://`` or ``mongodb+srv://`` URL without resolving anything.

    Raises:
        ConfigurationError: another scheme.
    """
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in ("mongodb", "mongodb+srv"):
        raise ConfigurationError(
            f"a MongoDB store URL starts with mongodb:// or mongodb+srv://, not {scheme!r}"
        )
    before_query, _, query = rest.partition("?")
    hosts, _, path = before_query.partition("/")
    userinfo = hosts.rpartition("@")[0]
    password = userinfo.partition(":")[2]
    collection: str | None = None
    kept: list[str] = []
    for part in query.split("&") if query else []:
        key, _, value = part.partition("=")
        if key == "collection":
            collection = unquote(value) or None
        else:
            kept.append(part)
    client_url = f"{scheme}://{hosts}/{path}" + (f"?{'&'.join(kept)}" if kept else "")
    secrets = tuple(s for s in {password, unquote(password)} if s)
    return ParsedUrl(client_url, unquote(path) or None, collection, secrets)


class Connection:
    """One store's client (made from the URL, or given), its collections and indexes."""

    def __init__(
        self,
        url: str,
        *,
        database: str | None,
        collection: str | None,
        client: AsyncMongoClient[dict[str, Any]] | None,
        options: dict[str, Any],
    ) -> None:
        parsed = parse_url(url)
        self.url = url
        self.where = redact(parsed.client_url)
        self.database_name = database or parsed.database or DEFAULT_DATABASE
        self.names = Names(collection or parsed.collection or DEFAULT_COLLECTION)
        self._client_url = parsed.client_url
        self._secrets = parsed.secrets
        in_url = {part.partition("=")[0].lower() for part in parsed.client_url.partition("?")[2].split("&")}
        defaults = {k: v for k, v in DEFAULT_OPTIONS.items() if k.lower() not in in_url}
        self._options = {**defaults, **options}
        self._own_client = client is None
        self._client = client
        self._collections: Collections | None = None
        self._opening = asyncio.Lock()
        self._closed = asyncio.Event()
        self._signal = Signal()
        self.history_ttl = HISTORY_TTL

    @contextmanager
    def errors(self) -> Iterator[None]:
        """Raise driver errors as backbeat's (:func:`~backbeat.stores.mongodb.errors.map_error`)."""
        with translated(self.where, self._secrets):
            yield

    @property
    def client(self) -> AsyncMongoClient[dict[str, Any]]:
        if self._client is None:
            try:
                self._client = AsyncMongoClient(self._client_url, document_class=dict, **self._options)
            except PyMongoError as exc:  # an invalid URI or option
                raise map_error(exc, self.where, secrets=self._secrets) from exc
        return self._client

    @property
    def database(self) -> AsyncDatabase[dict[str, Any]]:
        return self.client[self.database_name]

    async def open(self) -> None:
        self._closed.clear()
        async with self._opening:
            database = self.database
            collections = Collections.of(database, self.names)
            with self.errors():
                await database.command("ping")
                await ensure_indexes(collections, self.history_ttl)
            self._collections = collections

    async def collections(self) -> Collections:
        """The store's collections, opening the store (and creating indexes) on first use."""
        if self._collections is None:
            await self.open()
            assert self._collections is not None
        return self._collections

    async def close(self) -> None:
        self._closed.set()
        self._signal.notify()
        self._collections = None
        if self._own_client and self._client is not None:
            client, self._client = self._client, None
            with self.errors():
                await client.close()

    def notify(self) -> None:
        """Wake this process's listeners (another process learns of it by the change stream)."""
        self._signal.notify()

    async def wakeups(self) -> AsyncIterator[None]:
        """Yield after a change by this instance or, through a change stream, by another one;
        end when the store closes."""
        event = self._signal.subscribe()

        async def pump() -> None:
            async for _ in wakeups.listen(
                lambda: self.database, [self.names.tasks, self.names.runs, self.names.state], self._closed
            ):
                event.set()

        listener = asyncio.create_task(pump(), name="backbeat-mongodb-change-stream")
        try:
            while not self._closed.is_set():
                await event.wait()
                event.clear()
                if not self._closed.is_set():
                    yield None
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener
            self._signal.unsubscribe(event)


__all__ = ["DEFAULT_COLLECTION", "DEFAULT_DATABASE", "Connection", "ParsedUrl", "parse_url"]
