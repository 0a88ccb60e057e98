"""Self-fencing: a process stops working on a run before its lease can pass to another owner.

A lease is granted (by a claim, a fire or an extend) no earlier than the request was *sent*,
so by this process's monotonic clock it surely holds the run until ``sent + lease``; it
fences the run at ``sent + lease - margin``, before the store (which takes a run over once
``lease`` has passed since its last extend) can hand it to anyone else. Timing, with the
renew loop extending every ``lease / 3``::

    extend sent ─┬─ L/3: next extend ─ 2L/3: next ─ L - margin: fenced here ─ L: taken over there
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Collection, Generator, Iterable
from datetime import timedelta
from types import CoroutineType
from typing import Any, TypeVar

from backbeat.errors import LeaseLostError

T = TypeVar("T")

MARGIN = 0.1
"""The part of the lease kept in hand: a run is fenced at 90% of its lease since the last
extend that reached the store. It covers the time it takes to stop a run and any drift
between this host's monotonic clock and the store's clock."""


class LeaseDeadlines:
    """Until when, by the event loop's monotonic clock, this process surely holds each run.

    ``on_lapse`` is called with the ids of runs whose deadline passed without a renewal, once
    each, from a timer set for the earliest deadline.
    """

    def __init__(
        self,
        lease: timedelta,
        on_lapse: Callable[[list[str]], None],
        *,
        now: Callable[[], float] | None = None,
    ) -> None:
        self.hold = lease.total_seconds() * (1 - MARGIN)
        self._on_lapse = on_lapse
        self._now = now
        self._until: dict[str, float] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf

    def now(self) -> float:
        """The monotonic time to note before sending a request that grants or renews leases."""
        return self._now() if self._now is not None else asyncio.get_running_loop().time()

    def granted(self, run_ids: Iterable[str], sent_at: float) -> None:
        """The store granted (or renewed) these runs' leases in a request sent at ``sent_at``."""
        until = sent_at + self.hold
        for run_id in run_ids:
            if self._until.get(run_id, -math.inf) < until:
                self._until[run_id] = until
        self._arm()

    def holds(self, run_id: str) -> bool:
        """Whether this process surely still holds ``run_id``'s lease."""
        # the clock read inline, not through ``now()``: asked before every step of every run
        now = self._now() if self._now is not None else asyncio.get_running_loop().time()
        return now < self._until.get(run_id, -math.inf)

    def forget(self, run_ids: Collection[str]) -> None:
        """Stop watching these runs (they ended here)."""
        for run_id in run_ids:
            self._until.pop(run_id, None)

    def check(self) -> list[str]:
        """Hand the runs whose deadline passed to ``on_lapse`` (and forget them); returns them."""
        now = self.now()
        lapsed = [run_id for run_id, until in self._until.items() if until <= now]
        self.forget(lapsed)
        self._timer, self._timer_at = None, math.inf
        if lapsed:
            self._on_lapse(lapsed)
        self._arm()
        return lapsed

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self._timer_at = None, math.inf
        self._until.clear()

    def _arm(self) -> None:
        earliest = min(self._until.values(), default=math.inf)
        if earliest >= self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = earliest
        if earliest == math.inf:
            self._timer = None
            return
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(max(earliest - self.now(), 0.0), self.check)


class fenced(Awaitable[T]):
    """``call``, stopped by :class:`LeaseLostError` as soon as ``holds(run_id)`` is false.

    ``holds`` is asked before every resumption of ``call`` (its first step, and each time what
    it awaits is done), so after a pause of the whole process (SIGSTOP, a VM or GC stall) no
    line of the job runs before the lease is looked at; a cancellation that arrives once the
    lease is gone becomes a :class:`LeaseLostError` too. A thread-pool job cannot be stopped:
    its result is refused when it comes back. A class named as the function it was: one frame
    less per run.
    """

    __slots__ = ("_call", "_holds", "_run_id")

    def __init__(self, call: Awaitable[T], holds: Callable[[str], bool], run_id: str) -> None:
        self._call, self._holds, self._run_id = call, holds, run_id

    def __await__(self) -> Generator[Any, Any, T]:
        call = self._call
        # a coroutine is stepped directly: its ``__await__`` wrapper is one object and call more
        steps: Any = call if type(call) is CoroutineType else call.__await__()
        sent: Any = None
        thrown: BaseException | None = None
        while True:
            if not self._holds(self._run_id):
                thrown = LeaseLostError(f"run {self._run_id}: its lease may have passed to another owner")
            try:
                yielded = steps.send(sent) if thrown is None else steps.throw(thrown)
            except StopIteration as done:
                value: T = done.value  # not ``cast``: a call of its own
                return value
            sent, thrown = None, None
            try:
                sent = yield yielded
            except BaseException as exc:
                thrown = exc
