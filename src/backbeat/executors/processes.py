"""The process pool: module-level functions run in spawned child processes, each of which can be
stopped on its own, so a cancelled or fenced run does not go on working in its child."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import multiprocessing
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.context import SpawnContext, SpawnProcess
from typing import Any

from backbeat.errors import BackbeatError, ConfigurationError

log = logging.getLogger("backbeat.executors")

_Request = tuple[str, tuple[Any, ...], dict[str, Any]]


class ProcessPoolChildError(BackbeatError):
    """A process-pool child ended (crashed or was killed) before it answered."""


def _serve(conn: Connection) -> None:
    """A child's loop: call each ``(import path, args, kwargs)`` it receives, answer with
    ``("ok", result)`` or ``("error", exception)``; ``None`` or a closed pipe ends it."""
    from backbeat.model.codec import resolve_import_path

    while True:
        try:
            request = conn.recv()
        except EOFError:
            return
        if request is None:
            return
        job_ref, args, kwargs = request
        try:
            result = resolve_import_path(job_ref)(*args, **kwargs)
            if inspect.isawaitable(result):
                result = asyncio.run(_awaited(result))
            reply: tuple[str, Any] = ("ok", result)
        except (Exception, SystemExit) as exc:  # a job's sys.exit() fails its call, not the child
            reply = ("error", exc)
        try:
            conn.send(reply)
        except Exception as exc:  # an answer that cannot be pickled
            conn.send(("error", TypeError(f"the result of {job_ref} cannot be sent back: {exc!r}")))


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


class _Child:
    """One child process and the parent's end of its pipe."""

    def __init__(self, context: SpawnContext) -> None:
        parent, child = context.Pipe()
        self.process: SpawnProcess = context.Process(target=_serve, args=(child,), daemon=True)
        self.process.start()
        child.close()
        self.conn = parent

    async def call(self, request: _Request) -> tuple[str, Any]:
        self.conn.send(request)
        loop = asyncio.get_running_loop()
        readable = loop.create_future()
        fd = self.conn.fileno()
        loop.add_reader(fd, _set_once, readable)
        try:
            await readable  # an answer, or EOF once the child has ended
        finally:
            loop.remove_reader(fd)
        try:
            answer: tuple[str, Any] = self.conn.recv()
        except (EOFError, OSError):
            raise ProcessPoolChildError(
                f"process-pool child {self.process.pid} ended (exit code {self.process.exitcode}) mid-call"
            ) from None
        return answer

    def stop(self) -> None:
        """Ask the child to end after its current call."""
        with contextlib.suppress(OSError):
            self.conn.send(None)
        self.conn.close()

    def kill(self) -> None:
        """End the child now, whatever it is doing; a call waiting on it sees the pipe end."""
        self.process.kill()

    async def reap(self) -> None:
        """Wait for the killed child to end (off the event loop) and close the pipe."""
        await asyncio.to_thread(self.process.join, 5)
        self.conn.close()


def _set_once(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class ProcessPoolExecutor:
    """Runs module-level functions in up to ``max_workers`` child processes (spawned, so no forked
    locks), reused from call to call.

    Only functions with an import path can cross a process boundary; their arguments are the
    decoded task arguments. A call that is cancelled (a timeout, ``cancel_run``, a lease lost)
    kills its child, which a new one replaces at the next call. A job that needs the service
    provider should not use this executor.
    """

    def __init__(self, max_workers: int = 2) -> None:
        if max_workers < 1:
            raise ConfigurationError(f"processpool max_workers must be >= 1, got {max_workers}")
        self.max_workers = max_workers
        self._slots: tuple[asyncio.AbstractEventLoop, asyncio.Semaphore] | None = None
        self._idle: list[_Child] = []
        self._busy: set[_Child] = set()
        self._context: SpawnContext | None = None

    async def start(self) -> None:
        if self._context is None:
            self._context = multiprocessing.get_context("spawn")

    async def shutdown(self, wait: bool = True) -> None:
        """End the idle children; with ``wait=False`` kill the busy ones too."""
        self._context = None
        idle, self._idle = self._idle, []
        for child in idle:
            child.stop()
        if not wait:
            for child in list(self._busy):
                child.kill()  # its call sees the pipe end, fails, and reaps it
        await asyncio.gather(*(asyncio.to_thread(child.process.join, 5) for child in idle))

    def _slots_of(self, loop: asyncio.AbstractEventLoop) -> asyncio.Semaphore:
        # a semaphore belongs to the loop that first waits on it: one per loop
        if self._slots is None or self._slots[0] is not loop:
            self._slots = (loop, asyncio.Semaphore(self.max_workers))
        return self._slots[1]

    async def submit(self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        from backbeat.model.codec import import_path

        if inspect.ismethod(func) or "<locals>" in func.__qualname__ or "<lambda>" in func.__qualname__:
            raise ConfigurationError(
                f"{func.__qualname__} cannot run in a process pool: only module-level functions can"
            )
        request = (import_path(func), args, kwargs)
        async with self._slots_of(asyncio.get_running_loop()):
            await self.start()
            assert self._context is not None
            child = self._idle.pop() if self._idle else _Child(self._context)
            self._busy.add(child)
            try:
                status, value = await child.call(request)
            except BaseException:
                # cancelled, fenced or broken: the child may still be working on the call
                self._busy.discard(child)
                child.kill()
                await asyncio.shield(child.reap())
                raise
            self._busy.discard(child)
            if self._context is not None:
                self._idle.append(child)
            else:
                child.stop()
        if status == "error":
            raise value
        return value
