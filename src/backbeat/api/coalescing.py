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


class AddCoalescer:
    """Collects the tasks added during one turn of the event loop and stores them together.

    A task whose id is already stored (or added twice in one turn) fails only its own caller,
    with ``TaskExistsError``; any other error fails every caller of the batch.
    """

    def __init__(self, add_many: AddMany) -> None:
        self._add_many = add_many
        self._pending: dict[bool, list[_Entry]] = {}
        self._flushing: set[asyncio.Task[None]] = set()

    async def add(self, task: Task, *, replace: bool) -> None:
        """Store ``task`` with the other adds of this turn of the loop; returns once it is stored."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        if not self._pending:
            loop.call_soon(self._flush)
        self._pending.setdefault(replace, []).append((task, done))
        await done

    def _flush(self) -> None:
        pending, self._pending = self._pending, {}
        for replace, entries in pending.items():
            flushing = asyncio.get_running_loop().create_task(self._store(entries, replace))
            self._flushing.add(flushing)  # keep a reference until it is done
            flushing.add_done_callback(self._flushing.discard)

    async def _store(self, entries: list[_Entry], replace: bool) -> None:
        if not replace:
            entries = _first_of_each_id(entries)
        while entries:
            try:
                await self._add_many([task for task, _ in entries], replace)
            except TaskExistsError as exc:
                taken = set(exc.task_ids)
                if len(entries) > 1 and taken >= {task.id for task, _ in entries}:
                    # the store cannot say which (another process added ids meanwhile): ask one by one
                    for entry in entries:
                        await self._store([entry], replace)
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


def _first_of_each_id(entries: list[_Entry]) -> list[_Entry]:
    """The entries whose id comes first in the batch; a later one with the same id fails."""
    seen: set[str] = set()
    first: list[_Entry] = []
    for task, done in entries:
        if task.id in seen:
            raise_into([(task, done)], TaskExistsError([task.id]))
        else:
            seen.add(task.id)
            first.append((task, done))
    return first


def raise_into(entries: list[_Entry], exc: BaseException) -> None:
    """Fail the callers of ``entries`` with ``exc`` (those still waiting)."""
    for _, done in entries:
        if done.done():
            continue
        if isinstance(exc, asyncio.CancelledError):
            done.cancel()
        else:
            done.set_exception(exc)
