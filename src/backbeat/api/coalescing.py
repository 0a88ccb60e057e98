"""Coalesced adds: single-task adds made in one event-loop tick (many request handlers, or an
``asyncio.gather`` of ``schedule_*`` calls) become one store call, each caller still getting its
own outcome."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from backbeat.errors import TaskExistsError
from backbeat.model.records import Task

AddMany = Callable[[list[Task], bool], Awaitable[None]]
"""Stores tasks in one call: ``add(tasks, replace)``."""

_Entry = tuple[Task, asyncio.Future[None]]

MAX_BATCH = 1000
"""Tasks per store call: a Redis add of more is several script calls, atomic only in its check."""


class AddCoalescer:
    """Collects the tasks added during one turn of the event loop and stores them together.

    The first add of a turn yields once, so the other adds of that turn can join it; alone, it
    makes its store call itself (no extra task or loop turn: a lone awaited add stays one round
    trip), else the whole batch is stored by a task of its own, so cancelling one caller
    stops no other. A task whose id is already stored fails only its own caller, with
    ``TaskExistsError``; so does a second add of one id in the same turn, once the first is
    stored (if the first fails, the second gets the same error). Any other error fails every
    caller of the store call.
    """

    def __init__(self, add_many: AddMany) -> None:
        self._add_many = add_many
        self._joined: list[tuple[bool, _Entry]] | None = None
        """The adds that joined this turn's first one (None: no add is collecting)."""
        self._flushing: set[asyncio.Task[None]] = set()

    async def add(self, task: Task, *, replace: bool) -> None:
        """Store ``task`` with the other adds of this turn of the loop; returns once it is stored."""
        loop = asyncio.get_running_loop()
        if self._joined is not None:
            done: asyncio.Future[None] = loop.create_future()
            self._joined.append((replace, (task, done)))
            await done
            return
        joined: list[tuple[bool, _Entry]] = []
        self._joined = joined
        try:
            await asyncio.sleep(0)  # the other adds of this turn join
        except BaseException:
            self._joined = None
            self._flush(joined)  # a cancelled first add still stores the others
            raise
        self._joined = None
        if not joined:
            await self._add_many([task], replace)
            return
        done = loop.create_future()
        self._flush([(replace, (task, done)), *joined])
        await done

    def _flush(self, joined: list[tuple[bool, _Entry]]) -> None:
        by_replace: dict[bool, list[_Entry]] = {}
        for replace, entry in joined:
            by_replace.setdefault(replace, []).append(entry)
        for replace, entries in by_replace.items():
            flushing = asyncio.get_running_loop().create_task(self._store(entries, replace))
            self._flushing.add(flushing)  # keep a reference until it is done
            flushing.add_done_callback(self._flushing.discard)

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
            try:
                await self._add_many([task for task, _ in entries], replace)
            except TaskExistsError as exc:
                taken = set(exc.task_ids)
                if len(entries) > 1 and taken >= {task.id for task, _ in entries}:
                    # the store cannot say which (another process added ids meanwhile): ask one by one
                    for entry in entries:
                        await self._store_batch([entry], replace)
                    return
                failed = [entry for entry in entries if entry[0].id in taken]
                if not failed:  # ids not of this batch: nothing to learn from a retry
                    raise_into(entries, exc)
                    return
                for entry in failed:
                    raise_into([entry], TaskExistsError([entry[0].id]))
                entries = [entry for entry in entries if entry[0].id not in taken]
                continue
            except BaseException as exc:
                raise_into(entries, exc)
                if not isinstance(exc, Exception):
                    raise
                return
            for _, done in entries:
                if not done.done():
                    done.set_result(None)
            return


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
