"""How the sharded store asks all its shards at once and merges what they answer.

Pure over the :class:`~backbeat.abc.Store` protocol: a shard is any store.
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

from backbeat.abc import Store
from backbeat.model.history import HistoryEntry, encode_cursor
from backbeat.model.records import Claim, Run, Task

_LAST = datetime.max.replace(tzinfo=UTC)


async def claim_by_turns(
    shards: Sequence[Store],
    start: int,
    owner: str,
    *,
    now: datetime,
    lease: timedelta,
    limit: int,
    horizon: datetime | None,
    leased: Callable[[list[Run], int], None],
) -> Claim:
    """Claim up to ``limit`` over ``shards``, beginning with shard ``start`` (turned by the caller
    at each claim, so no shard starves). Every shard that may have due work gets a fair part of
    the room left: one that returns less than its part has no more, one that used its whole part
    may have, and is asked again for what the others left. ``leased`` sees each shard's runs.
    Tasks come back by next run time; within a shard the earliest come first."""
    claim = Claim()
    candidates = [*range(start, len(shards)), *range(start)]
    room = limit
    while room > 0 and candidates:
        asked = candidates[: min(len(candidates), room)]
        parts = [room // len(asked) + (n < room % len(asked)) for n in range(len(asked))]
        answers = await asyncio.gather(
            *(
                shards[i].claim_due(owner, now=now, lease=lease, limit=part, horizon=horizon)
                for i, part in zip(asked, parts, strict=True)
            )
        )
        full = []
        for i, part, got in zip(asked, parts, answers, strict=True):
            leased(got.runs, i)
            claim.tasks += got.tasks
            claim.runs += got.runs
            if len(got.tasks) + len(got.runs) == part:
                full.append(i)
        candidates = full + candidates[len(asked) :]
        room = limit - len(claim.tasks) - len(claim.runs)
    claim.tasks.sort(key=lambda task: (task.next_run_time or _LAST, task.id))
    return claim


def merge_task_pages(
    pages: Sequence[tuple[list[Task], str | None]], limit: int | None, cursor: str | None
) -> tuple[list[Task], str | None]:
    """One page by id from each shard's page of (at most ``limit``) tasks after ``cursor``."""
    merged = list(heapq.merge(*(page for page, _ in pages), key=lambda task: task.id))
    if limit is None or (len(merged) <= limit and all(more is None for _, more in pages)):
        return merged, None
    page = merged[:limit]
    return page, page[-1].id if page else cursor


def merge_history_pages(
    pages: Sequence[tuple[list[HistoryEntry], str | None]], limit: int
) -> tuple[list[HistoryEntry], str | None]:
    """One page, newest first, from each shard's page of (at most ``limit``) entries."""
    newest = sorted(
        (entry for page, _ in pages for entry in page),
        key=lambda entry: (entry.ended_at, entry.id),
        reverse=True,
    )
    if len(newest) <= limit and all(more is None for _, more in pages):
        return newest, None
    page = newest[:limit]
    return page, encode_cursor(page[-1])


__all__ = ["claim_by_turns", "merge_history_pages", "merge_task_pages"]
