"""Test doubles shared by unit tests: a clock that moves only when told."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta


class FakeClock:
    """A clock (``clock()`` is ``clock.now``) that moves only by :meth:`advance`.

    Its :meth:`sleep` (an engine's ``sleep=``) returns once the clock has been advanced by the
    delay asked for; the delays asked for are kept in ``sleeps``.
    """

    def __init__(self, now: datetime) -> None:
        self.now = now
        self.sleeps: list[float] = []
        self._sleepers: list[tuple[datetime, asyncio.Future[None]]] = []

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        for until, waiter in self._sleepers:
            if until <= self.now and not waiter.done():
                waiter.set_result(None)
        self._sleepers = [(until, waiter) for until, waiter in self._sleepers if not waiter.done()]
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        until = self.now + timedelta(seconds=seconds)
        if until <= self.now:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sleepers.append((until, waiter))
        await waiter


async def settle(rounds: int = 20) -> None:
    """Let every task that can make progress without time passing do so."""
    for _ in range(rounds):
        await asyncio.sleep(0)


async def noop() -> None:
    """A job with an import path (``tests.fakes:noop``) that does nothing."""
