"""Coalesced adds: a single-task add is sent at once when no add of its kind is in flight; the
adds that arrive meanwhile (many request handlers, or an ``asyncio.gather`` of ``schedule_*``
calls) wait for it and are then sent together, two batches in flight at once, each caller still
getting its own outcome."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from backbeat.errors import StoreClosedError, StoreUnavailableError, TaskExistsError
from backbeat.model.records import Task

AddMany = Callable[[list[Task], bool], Awaitable[None]]
"""Stores tasks in one call: ``add(tasks, replace)``."""
Stored = Callable[[list[Task]], None]
"""Told of the tasks of each call that stored them, before their callers are answered."""

_Entry = tuple[Task, asyncio.Future[None]]

MAX_BATCH = 1000
"""Tasks per store call: a Redis add of more is several script calls, atomic only in its check."""
IN_FLIGHT = 2
"""Batches of one kind in flight at once: while the store takes one, the callers of the one
before it add again and the next batch is sent (on Redis, pipelined on one connection), so the
producers' process and the store work side by side instead of in turns."""
SPLIT_AT = 32
"""Adds waiting, with no batch in flight, that are sent as two batches: their callers come back
in two groups, which keeps two batches going."""


class _Lane:
    """The adds of one kind (replacing or not) on one event loop, while a store call of that kind
    is in flight: those that arrived since, sent when it returns."""

    __slots__ = ("loop", "sending", "waiting")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.waiting: list[_Entry] = []
        self.sending: dict[asyncio.Task[None], set[str]] = {}
        """The batches in flight, each with its ids."""


class AddCoalescer:
    """Sends a single add at once, and the adds made while one is in flight as one batch after it.

    An add with no store call of its kind (replacing or not) in flight makes its call itself,
    in its caller's task: a lone awaited add costs no extra task or loop turn. The adds that
    come while that call (or a batch) is in flight wait; when it returns, they are stored as one
    batch by a task of their own (so cancelling one caller stops no other), sent one loop turn
    after the previous call's callers were answered, so that those who add again at once join
    it. Under load that makes one store call per round of concurrent producers, as collecting a
    loop turn's adds did, without making the lone add wait for a turn. Up to :data:`IN_FLIGHT`
    batches are in flight at once: a batch is sent while the one before it is still being
    stored, except the adds of an id in flight, which wait for it (a later add of an id is never
    stored before an earlier one of its kind).

    Adds of one id of the two kinds are not kept in order: each kind has its own lane, so a
    replacing add may be stored before a plain add of that id made earlier (waiting behind a
    batch of its kind), or after one made later. Both orders are correct for calls that overlap:
    neither comes first for their callers (nor would it for two calls on two connections of a
    pool, or for ``add_tasks``, which does not come here), and either way the task stored after
    both is the last replacing add's (a replacing add always writes, a plain one only while the
    id is not stored). The order decides only whether the plain add is stored until the
    replacing one lands, or fails with ``TaskExistsError``. A caller who needs the plain add
    first awaits it before making the other. (Within one kind the order decides what is stored,
    the first plain add or the last replacing one, and is kept.)

    A task whose id is already stored fails only its own caller, with ``TaskExistsError``; so
    does a later add of an id while an earlier add of it is in flight or in the same batch, once
    the earlier is stored (in one batch, if the first fails, the second gets the same error).
    A batch refused for another reason (a value the store cannot encode, a script error) is sent
    again one add at a time, so that each caller gets its own outcome; only a store that cannot
    be reached fails every caller of the call at once.

    :meth:`closing` lets the batches in flight and waiting be stored before the store closes,
    up to a bound; the adds still waiting then fail with ``StoreClosedError``, and no batch is
    sent until :meth:`closed`.
    """

    def __init__(self, add_many: AddMany, stored: Stored = lambda tasks: None) -> None:
        self._add_many = add_many
        self._stored = stored
        self._lanes: dict[bool, _Lane] = {}
        """A lane per kind of add with a store call in flight."""
        self._flushing: set[asyncio.Task[None]] = set()
        self._refusal: StoreClosedError | None = None
        """The error of the adds made, or left waiting, while the store closes."""
        self._cut = False
        """Whether the adds waiting fail with :attr:`_refusal` instead of being sent."""
        self._idle: asyncio.Future[None] | None = None
        """Answered when no lane of :meth:`closing`'s loop is left."""

    async def add(self, task: Task, *, replace: bool) -> str:
        """Store ``task`` now, or with the next batch if an add of its kind is in flight; returns
        its id once it is stored.

        Raises:
            StoreClosedError: the store is closing (:meth:`closing`).
        """
        if self._refusal is not None:
            raise self._refused(self._refusal)
        loop = asyncio.get_running_loop()
        lane = self._lanes.get(replace)
        if lane is not None and lane.loop is loop:
            done: asyncio.Future[None] = loop.create_future()
            lane.waiting.append((task, done))
            await done
            return task.id
        # (a lane of another loop is stale: that loop ended with a call in flight)
        lane = self._lanes[replace] = _Lane(loop)
        try:
            tasks = [task]
            await self._add_many(tasks, replace)
            self._stored(tasks)
        finally:
            if lane.waiting or self._idle is not None or self._cut:
                self._hand_over(lane, replace)
            elif self._lanes.get(replace) is lane:  # (_hand_over's common case, written out)
                del self._lanes[replace]
        return task.id

    async def closing(self, grace: float, refusal: StoreClosedError) -> None:
        """Before the store closes: refuse new adds with ``refusal``; let the batches of this
        loop be sent and stored for ``grace`` seconds at most, then fail the adds still waiting
        with ``refusal`` (the store's close bounds the calls still in flight)."""
        self._refusal = refusal
        loop = asyncio.get_running_loop()
        if any(lane.loop is loop for lane in self._lanes.values()):
            self._idle = loop.create_future()
            await asyncio.wait([self._idle], timeout=grace)
        self._cut = True
        for lane in self._lanes.values():
            waiting, lane.waiting = lane.waiting, []
            raise_into(waiting, refusal)

    def check_open(self) -> None:
        """Raise the closing store's ``StoreClosedError`` while it closes."""
        if self._refusal is not None:
            raise self._refused(self._refusal)

    @staticmethod
    def _refused(refusal: StoreClosedError) -> StoreClosedError:
        # a copy for each caller: an exception raised again keeps the frames of every earlier
        # raise in its traceback, so one shared instance would grow with each add refused
        return StoreClosedError(*refusal.args)

    def closed(self) -> None:
        """After the store closed: adds are taken again (they open it anew)."""
        self._refusal, self._cut, self._idle = None, False, None

    def _hand_over(self, lane: _Lane, replace: bool) -> None:
        """After a lone add's call: the adds that waited for it are sent by a task of their own."""
        if self._cut and self._refusal is not None:  # (the store closes without them)
            raise_into(lane.waiting, self._refusal)
            lane.waiting = []
        if not lane.waiting:
            self._close(lane, replace)
            return
        flushing = lane.loop.create_task(self._flush(lane, replace))
        self._flushing.add(flushing)  # keep a reference until it is done
        flushing.add_done_callback(self._flushing.discard)

    def _close(self, lane: _Lane, replace: bool) -> None:
        if self._lanes.get(replace) is lane:
            del self._lanes[replace]
        idle = self._idle
        if (
            idle is not None
            and not idle.done()
            and not any(other.loop is lane.loop for other in self._lanes.values())
        ):
            idle.set_result(None)

    async def _flush(self, lane: _Lane, replace: bool) -> None:
        sending = lane.sending
        try:
            while lane.waiting or sending:
                if self._cut and self._refusal is not None:  # (the store closes without them)
                    raise_into(lane.waiting, self._refusal)
                    lane.waiting = []
                elif lane.waiting and len(sending) < IN_FLIGHT and (batch := _next_batch(lane)):
                    storing = lane.loop.create_task(self._store(batch, replace))
                    sending[storing] = {task.id for task, _ in batch}
                    continue
                done, _ = await asyncio.wait(sending, return_when=asyncio.FIRST_COMPLETED)
                for stored in done:
                    del sending[stored]
                    stored.result()  # (its callers are answered: only a cancel or a bug raises)
                # the callers just answered run first: an add they make at once joins the next batch
                await asyncio.sleep(0)
        finally:
            self._close(lane, replace)
            raise_into(lane.waiting, asyncio.CancelledError())  # only if this task was cancelled

    async def _store(self, entries: list[_Entry], replace: bool) -> None:
        repeats: list[tuple[_Entry, _Entry]] = []
        if not replace:
            entries, repeats = _split_repeats(entries)
        for start in range(0, len(entries), MAX_BATCH):
            await self._store_batch(entries[start : start + MAX_BATCH], replace)
        for repeat, (_, first) in repeats:
            error = None if first.cancelled() else first.exception()
            raise_into([repeat], error if error is not None else TaskExistsError([repeat[0].id]))

    async def _store_batch(self, entries: list[_Entry], replace: bool) -> None:
        while entries:
            tasks = [task for task, _ in entries]
            try:
                await self._add_many(tasks, replace)
            except TaskExistsError as exc:
                entries = await self._without_taken(entries, replace, exc)
                continue
            except (StoreUnavailableError, OSError) as exc:
                raise_into(entries, exc)
                return
            except Exception as exc:
                if len(entries) == 1:
                    raise_into(entries, exc)
                else:  # whose add is it that fails? each caller gets its own outcome
                    await self._one_by_one(entries, replace)
                return
            except BaseException as exc:
                raise_into(entries, exc)
                raise
            self._stored(tasks)
            for _, done in entries:
                if not done.done():
                    done.set_result(None)
            return

    async def _without_taken(
        self, entries: list[_Entry], replace: bool, exc: TaskExistsError
    ) -> list[_Entry]:
        """Fail the entries whose id ``exc`` names; the others, to send again."""
        taken = set(exc.task_ids)
        if len(entries) > 1 and taken >= {task.id for task, _ in entries}:
            # the store cannot say which (another process added ids meanwhile): ask one by one
            await self._one_by_one(entries, replace)
            return []
        failed = [entry for entry in entries if entry[0].id in taken]
        if not failed:  # ids not of this batch: nothing to learn from a retry
            raise_into(entries, exc)
            return []
        for entry in failed:
            raise_into([entry], TaskExistsError([entry[0].id]))
        return [entry for entry in entries if entry[0].id not in taken]

    async def _one_by_one(self, entries: list[_Entry], replace: bool) -> None:
        """Send each add alone, until two in a row fail with the same error: then the store
        refuses every add (a read-only replica, a full disk), and the rest get that error
        without a call each."""
        last: str | None = None
        for i, (_, done) in enumerate(entries):
            await self._store_batch([entries[i]], replace)
            error = None if done.cancelled() else done.exception()
            if error is None or isinstance(error, TaskExistsError):
                last = None
                continue
            seen = f"{type(error).__qualname__}: {error}"
            if seen == last:
                raise_into(entries[i + 1 :], error)
                return
            last = seen


def _next_batch(lane: _Lane) -> list[_Entry]:
    """Take the next batch off ``lane``'s waiting adds: at most :data:`MAX_BATCH`, half of them
    when none is in flight and :data:`SPLIT_AT` or more wait, none of an id in flight."""
    ready, held = lane.waiting, []
    if lane.sending:
        in_flight = set().union(*lane.sending.values())
        ready = [entry for entry in lane.waiting if entry[0].id not in in_flight]
        held = [entry for entry in lane.waiting if entry[0].id in in_flight]
    size = MAX_BATCH
    if not lane.sending and len(ready) >= SPLIT_AT:
        size = min(size, (len(ready) + 1) // 2)
    batch, lane.waiting = ready[:size], held + ready[size:]
    return batch


def _split_repeats(entries: list[_Entry]) -> tuple[list[_Entry], list[tuple[_Entry, _Entry]]]:
    """The entries whose id comes first in the batch, and each later one with its first."""
    first: dict[str, _Entry] = {}
    repeats: list[tuple[_Entry, _Entry]] = []
    for entry in entries:
        if entry[0].id in first:
            repeats.append((entry, first[entry[0].id]))
        else:
            first[entry[0].id] = entry
    return list(first.values()), repeats


def raise_into(entries: list[_Entry], exc: BaseException) -> None:
    """Fail the callers of ``entries`` with ``exc`` (those still waiting)."""
    for _, done in entries:
        if done.done():
            continue
        if isinstance(exc, asyncio.CancelledError):
            done.cancel()
        else:
            done.set_exception(exc)
