"""PyMongo's exceptions as backbeat's, with no credentials in any message."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

from pymongo.errors import (
    BulkWriteError,
    ConnectionFailure,
    DuplicateKeyError,
    ExecutionTimeout,
    OperationFailure,
    PyMongoError,
    WaitQueueTimeoutError,
    WTimeoutError,
)
from pymongo.errors import ConfigurationError as MongoConfigurationError

from backbeat.errors import BackbeatError, ConfigurationError, StoreError, StoreUnavailableError

DUPLICATE_KEY = 11000
"""The server's error code for a unique index violation."""
UNAUTHORIZED = (13, 18)
"""Not authorized, authentication failed: configuration, not an outage."""

_USERINFO = re.compile(r"(mongodb(?:\+srv)?://)[^@/\s]*@", re.IGNORECASE)


def redact(url: str) -> str:
    """``url`` with any user name and password replaced by ``***``."""
    return _USERINFO.sub(r"\1***@", url)


def _scrub(message: str, secrets: tuple[str, ...]) -> str:
    message = redact(message)
    for secret in secrets:
        if secret:
            message = message.replace(secret, "***")
    return message


def map_error(exc: Exception, where: str, *, secrets: tuple[str, ...] = ()) -> BackbeatError:
    """The backbeat exception for a driver exception raised talking to ``where``.

    * lost or refused connections, server selection and pool timeouts, a primary stepping
      down (all :class:`~pymongo.errors.ConnectionFailure` and the pool's wait timeout),
      and write-concern or operation timeouts: :class:`StoreUnavailableError` (the engine
      retries with backoff);
    * an invalid URI or client option: :class:`ConfigurationError`;
    * anything else the driver raises (a refused command, an authentication failure):
      :class:`StoreError`.

    ``secrets`` (e.g. the URL's password) are masked in the message, as are credentials in
    any ``mongodb://`` URL it contains.
    """
    detail = _scrub(str(exc), secrets)
    if isinstance(exc, ConnectionFailure | WaitQueueTimeoutError | ExecutionTimeout | WTimeoutError):
        return StoreUnavailableError(f"MongoDB at {where} is unavailable: {detail}")
    if isinstance(exc, MongoConfigurationError):
        return ConfigurationError(f"MongoDB store at {where} is misconfigured: {detail}")
    if isinstance(exc, OperationFailure) and exc.code in UNAUTHORIZED:
        return StoreError(f"MongoDB at {where} refused the credentials or the operation: {detail}")
    return StoreError(f"MongoDB at {where} failed: {detail}")


def is_duplicate_key(exc: PyMongoError) -> bool:
    """Whether a write failed only because a document of that ``_id`` exists."""
    if isinstance(exc, DuplicateKeyError):
        return True
    if isinstance(exc, BulkWriteError):
        errors = exc.details.get("writeErrors", [])
        concern = exc.details.get("writeConcernErrors", [])
        return bool(errors) and not concern and all(e.get("code") == DUPLICATE_KEY for e in errors)
    return False


def refused_indexes(exc: BulkWriteError) -> set[int]:
    """Positions, in the batch, of the documents not written, whatever the reason."""
    return {int(e["index"]) for e in exc.details.get("writeErrors", [])}


def duplicate_indexes(exc: BulkWriteError) -> set[int]:
    """Positions, in the batch, of the documents refused as duplicates."""
    return {int(e["index"]) for e in exc.details.get("writeErrors", []) if e.get("code") == DUPLICATE_KEY}


@contextmanager
def translated(where: str, secrets: tuple[str, ...] = ()) -> Iterator[None]:
    """Raise driver errors met inside the block as backbeat's (see :func:`map_error`)."""
    try:
        yield
    except PyMongoError as exc:
        raise map_error(exc, where, secrets=secrets) from exc


__all__ = ["DUPLICATE_KEY", "duplicate_indexes", "is_duplicate_key", "map_error", "redact", "translated"]
