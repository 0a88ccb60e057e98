"""``BackgroundTasksBus``: send task descriptors to the scheduler, before or after it starts."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Generator
from typing import Any

from reactivex.subject import Subject

from backbeat.model.jobs import TaskDescriptor

log = logging.getLogger("backbeat.bus")

Handler = Callable[[TaskDescriptor], Awaitable[str]]


class ScheduleRequest:
    """What ``schedule_task`` returns: ignore it (fire-and-forget) or ``await`` it for the task id.

    Awaiting it raises the error that scheduling met; if nobody awaits a failed request, the
    error is logged with the descriptor's id and name.
    """

    def __init__(self, descriptor: TaskDescriptor) -> None:
        self.descriptor = descriptor
        self._future: asyncio.Future[str] | None = None
        self._result: str | None = None
        self._error: BaseException | None = None
        self._awaited = False
        self._done_callbacks: list[Callable[[], None]] = []

    def _settle(self, result: str | None, error: BaseException | None) -> None:
        self._result, self._error = result, error
        if self._future is not None and not self._future.done():
            if error is not None:
                self._future.set_exception(error)
            else:
                self._future.set_result(result or "")
        if error is not None and not self._awaited:
            log.error("scheduling %s (%s) failed: %s", self.descriptor.id, self.descriptor.name, error)

    @property
    def done(self) -> bool:
        return self._result is not None or self._error is not None

    def __await__(self) -> Generator[Any, None, str]:
        self._awaited = True
        if self._error is not None:
            raise self._error
        if self._result is not None:
            return self._result
        if self._future is None:
            self._future = asyncio.get_running_loop().create_future()
        return (yield from self._future.__await__())


class BackgroundTasksBus:
    """Carries descriptors to the scheduler. Descriptors sent before it starts wait, never lost."""

    def __init__(self) -> None:
        self.input_stream: Subject[TaskDescriptor] = Subject()
        self._pending: list[ScheduleRequest] = []
        self._handler: Handler | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def schedule_task(self, task_descriptor: TaskDescriptor) -> ScheduleRequest:
        """Schedule the task a descriptor describes; returns a request to ``await`` for its id or error."""
        request = ScheduleRequest(task_descriptor)
        self.input_stream.on_next(task_descriptor)
        if self._handler is None:
            self._pending.append(request)
        else:
            self._submit(request)
        return request

    async def schedule_task_async(self, task_descriptor: TaskDescriptor) -> str:
        """Schedule a task and return its id.

        Raises:
            UnknownJobError, EncodingError, InvalidTriggerError, StoreError: what scheduling met.
        """
        return await self.schedule_task(task_descriptor)

    def attach(self, handler: Handler, loop: asyncio.AbstractEventLoop) -> None:
        """Connect the scheduler; descriptors waiting since before its start are sent now."""
        self._handler, self._loop = handler, loop
        pending, self._pending = self._pending, []
        for request in pending:
            self._submit(request)

    def detach(self) -> None:
        self._handler, self._loop = None, None

    def _submit(self, request: ScheduleRequest) -> None:
        assert self._handler is not None
        handler = self._handler

        async def run() -> None:
            try:
                request._settle(await handler(request.descriptor), None)
            except Exception as exc:
                request._settle(None, exc)

        assert self._loop is not None
        try:
            in_loop_thread = asyncio.get_running_loop() is self._loop
        except RuntimeError:
            in_loop_thread = False
        if in_loop_thread:
            self._loop.create_task(run())
        else:
            asyncio.run_coroutine_threadsafe(run(), self._loop)

    def dispose(self) -> None:
        """Complete the input stream."""
        self.input_stream.on_completed()
