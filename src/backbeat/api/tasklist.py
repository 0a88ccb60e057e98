"""What ``list_tasks`` and ``get_task_info`` return: a readable view of a stored task."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Awaitable, Callable, Coroutine, Generator, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, overload

from backbeat.errors import BackbeatError
from backbeat.model import codec, triggers
from backbeat.model.records import Task


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskInfo:
    """A stored task as users see it (``job.id``, ``job.next_run_time``, ...)."""

    id: str
    name: str
    job: str
    trigger: str
    trigger_spec: dict[str, Any]
    next_run_time: datetime | None
    args: Any
    kwargs: Any
    data: Any
    tags: tuple[str, ...]
    paused: bool
    orphaned: str | None
    local: bool
    running: int
    runs: int
    failures: int
    last_outcome: str | None
    last_run_at: datetime | None
    misfire_grace_time: float | None
    coalesce: bool
    max_instances: int
    overlap: str

    @classmethod
    def of(cls, task: Task, *, local: bool = False) -> TaskInfo:
        return cls(
            id=task.id,
            name=task.name,
            job=task.job,
            trigger=_describe(task.trigger),
            trigger_spec=task.trigger,
            next_run_time=task.next_run_time,
            args=_decoded(task.args),
            kwargs=_decoded(task.kwargs),
            data=_decoded(task.data) if task.data is not None else None,
            tags=task.tags,
            paused=task.paused,
            orphaned=task.orphaned,
            local=local,
            running=task.running,
            runs=task.runs,
            failures=task.failures,
            last_outcome=task.last_outcome,
            last_run_at=task.last_run_at,
            misfire_grace_time=task.options.misfire_grace_time,
            coalesce=task.options.coalesce,
            max_instances=task.options.max_instances,
            overlap=task.options.overlap,
        )

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    def __getitem__(self, key: str) -> Any:  # Neuroglia's get_task_info returned a dict
        return getattr(self, key)


def _decoded(value: Any) -> Any:
    try:
        return codec.decode(value)
    except BackbeatError as exc:
        return f"<cannot decode: {exc}>"


def _describe(spec: dict[str, Any]) -> str:
    try:
        return triggers.describe(spec)
    except BackbeatError as exc:
        return f"<invalid trigger: {exc}>"


@dataclass(frozen=True, slots=True)
class TaskPage:
    """One page of ``list_tasks_page``: tasks in id order, and the cursor of the next page
    (``None``: the last page)."""

    tasks: list[TaskInfo]
    next_cursor: str | None


class TaskList(Sequence[TaskInfo]):
    """The result of ``list_tasks()``: ``await`` it in async code; iterating it directly blocks
    the calling thread for one store query, so sync code can loop over it as a list."""

    def __init__(
        self,
        fetch: Callable[[], Coroutine[Any, Any, list[TaskInfo]]],
        fetch_blocking: Callable[[], list[TaskInfo]],
    ) -> None:
        self._fetch = fetch
        self._fetch_blocking = fetch_blocking
        self._items: list[TaskInfo] | None = None

    def __await__(self) -> Generator[Any, None, list[TaskInfo]]:
        return self._fetch().__await__()

    def _loaded(self) -> list[TaskInfo]:
        if self._items is None:
            self._items = self._fetch_blocking()
        return self._items

    @overload
    def __getitem__(self, index: int) -> TaskInfo: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[TaskInfo]: ...
    def __getitem__(self, index: int | slice) -> TaskInfo | Sequence[TaskInfo]:
        return self._loaded()[index]

    def __len__(self) -> int:
        return len(self._loaded())

    def __iter__(self) -> Iterator[TaskInfo]:
        return iter(self._loaded())

    def __repr__(self) -> str:
        return f"TaskList({self._loaded()!r})"


def run_blocking(make: Callable[[], Awaitable[Any]], loop: asyncio.AbstractEventLoop | None) -> Any:
    """Run a coroutine to completion from synchronous code, without touching a busy loop's resources.

    From another thread than ``loop``'s, it runs on ``loop``; from inside a running loop, on a
    fresh loop in a helper thread (``make`` must then not use ``loop``-bound connections).
    """
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is None and loop is not None and loop.is_running():
        return asyncio.run_coroutine_threadsafe(_as_coroutine(make), loop).result()
    if running is None:
        return asyncio.run(_as_coroutine(make))
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, _as_coroutine(make)).result()


async def _as_coroutine(make: Callable[[], Awaitable[Any]]) -> Any:
    return await make()
