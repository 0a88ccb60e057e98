"""A no-op job that counts its runs and sets an event when the awaited number have run (in a
module of its own: a job must not live in ``__main__``, which another process cannot import)."""

from __future__ import annotations

import asyncio


class _Count:
    """Runs of :func:`noop` so far, and an event set when the awaited number have run: waiting
    for it costs nothing per run and nothing per second (a poll would add instructions by the
    second, which under callgrind's slowdown swamp those of the runs)."""

    def __init__(self) -> None:
        self.fired, self.wanted, self.done = 0, 0, asyncio.Event()

    def expect(self, n: int) -> None:
        self.fired, self.wanted, self.done = 0, n, asyncio.Event()

    async def all_ran(self, timeout: float) -> None:
        """Wait until the awaited number have run; ``TimeoutError`` naming how many did after
        ``timeout`` seconds (a run lost would otherwise keep a bench waiting for ever)."""
        try:
            async with asyncio.timeout(timeout):
                await self.done.wait()
        except TimeoutError:
            raise TimeoutError(f"only {self.fired} of {self.wanted} runs within {timeout:g} s") from None


COUNT = _Count()


async def noop() -> None:
    """The job: counts itself."""
    COUNT.fired += 1
    if COUNT.fired == COUNT.wanted:
        COUNT.done.set()
