"""What every job store source shares: the job record, the protocol, paging and error helpers."""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

from backbeat.errors import StoreUnavailableError


@dataclass(frozen=True, slots=True)
class StoredJob:
    """One job as its APScheduler job store keeps it."""

    id: str
    state: bytes
    """The pickled job state (never unpickled but by :func:`backbeat.migrate.unpickle.loads`)."""


class Source(Protocol):
    """An APScheduler 3 job store to migrate from."""

    description: str
    """Where the jobs are, without a password (``redis://host:6379/0 apscheduler.jobs``)."""

    def count(self) -> int:
        """How many jobs the store holds now."""

    def read(self, after: str | None, limit: int) -> list[StoredJob]:
        """Up to ``limit`` jobs whose id sorts after ``after`` (all ids when ``None``), by id."""

    def delete(self, job_ids: Sequence[str]) -> None:
        """Remove jobs from the store (what APScheduler's ``remove_job`` removes)."""

    def close(self) -> None:
        """Release connections."""


def redacted(url: str) -> str:
    """``url`` without its password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@", 1)).geturl()


def page_after(ids: list[str], after: str | None, limit: int) -> list[str]:
    """The ``limit`` ids of sorted ``ids`` that come after ``after``."""
    start = 0 if after is None else bisect.bisect_right(ids, after)
    return ids[start : start + limit]


def unavailable(description: str, exc: BaseException) -> StoreUnavailableError:
    """A driver error as a one-line :class:`StoreUnavailableError`."""
    detail: Any = getattr(exc, "orig", None) or exc
    first = str(detail).strip().splitlines()[0] if str(detail).strip() else type(detail).__name__
    return StoreUnavailableError(f"{description}: {first}")
