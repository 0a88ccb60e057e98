"""Requests to cancel running runs, shared through the store (``cancel`` state document).

Storing a request wakes every scheduler; one running runs looks at the requests soon after
a wake-up, and at each lease renewal (every lease/3 seconds) in case a wake-up was lost. The
process running the run cancels its asyncio task; the run completes as ``cancelled``.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Any

from backbeat.abc import Store

KEY = "cancel"
KEEP = timedelta(minutes=10)
"""A request nobody acted on (its run finished meanwhile) is dropped after this long."""
_TRIES = 8


async def request(store: Store, run_id: str, now: datetime) -> bool:
    """Ask whichever process runs ``run_id`` to cancel it; whether the request was stored."""
    return await _change(store, now, add=run_id, wake=True)


async def pending(store: Store, run_ids: Collection[str]) -> set[str]:
    """Which of ``run_ids`` have a cancel request."""
    record = await store.get_state(KEY)
    if record is None or not run_ids:
        return set()
    return set(run_ids) & set(record.value)


async def done(store: Store, run_ids: Collection[str], now: datetime) -> None:
    """Forget the requests of runs that were cancelled."""
    await _change(store, now, drop=run_ids)


async def _change(
    store: Store, now: datetime, *, add: str | None = None, drop: Collection[str] = (), wake: bool = False
) -> bool:
    for _ in range(_TRIES):
        record = await store.get_state(KEY)
        requests: dict[str, Any] = dict(record.value) if record is not None else {}
        horizon = (now - KEEP).timestamp()
        kept = {k: v for k, v in requests.items() if k not in drop and float(v) >= horizon}
        if add is not None:
            kept[add] = now.timestamp()
        if kept == requests:
            return True
        if await store.put_state(KEY, kept, version=record.version if record is not None else 0, wake=wake):
            return True
    return False
