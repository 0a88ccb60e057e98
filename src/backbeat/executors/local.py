"""Executors in this process: the event loop, a thread pool, or your own."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import inspect
import weakref
from collections.abc import Awaitable, Callable
from types import CoroutineType
from typing import Any

from backbeat.errors import ConfigurationError


async def _call_maybe_async(func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    result = func(*args, **kwargs)
    if inspect.isawaitable(result):
        result = await result
    return result


def _is_async(func: Callable[..., Any]) -> bool:
    target = func.func if isinstance(func, functools.partial) else func
    # a bound method is made anew for every run: ask about its function, once
    plain = getattr(target, "__func__", target)
    try:
        key: weakref.ref[Any] | None = weakref.ref(plain)
    except TypeError:  # not weak-referenceable: not cached
        key = None
    known = None if key is None else _ASYNC.get(key)
    if known is None:
        call = getattr(target, "__call__", None)  # noqa: B004 - an async __call__ makes an object async
        known = inspect.iscoroutinefunction(target) or inspect.iscoroutinefunction(call)
        if key is not None:
            _ASYNC[weakref.ref(plain, _forget)] = known
    return known


_ASYNC: dict[weakref.ref[Any], bool] = {}
"""Whether a function is a coroutine function, by a weak reference to it (dropped with it): a
plain dict, not a ``WeakKeyDictionary``, whose ``get`` is a Python frame more per run."""


def _forget(key: weakref.ref[Any]) -> None:
    _ASYNC.pop(key, None)


async def _ready(value: Any) -> Any:
    return value


class AsyncIOExecutor:
    """Default: coroutine functions run on the event loop, plain functions in the loop's default threads."""

    async def start(self) -> None:
        pass

    async def shutdown(self, wait: bool = True) -> None:
        pass

    async def submit(self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if _is_async(func):
            result = func(*args, **kwargs)  # _call_maybe_async, inlined: one coroutine less per run
            return await result if inspect.isawaitable(result) else result
        return await self._in_thread(func, args, kwargs)

    def call(self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Awaitable[Any]:
        """What :meth:`submit` awaits, without a coroutine of its own for a coroutine function:
        the job's own coroutine (one coroutine frame less per run)."""
        if _is_async(func):
            result = func(*args, **kwargs)
            # a coroutine is told apart without a call to ``inspect.isawaitable``
            return result if type(result) is CoroutineType or inspect.isawaitable(result) else _ready(result)
        return self._in_thread(func, args, kwargs)

    async def _in_thread(
        self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        ctx = contextvars.copy_context()
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(None, functools.partial(ctx.run, func, *args, **kwargs))
        if inspect.isawaitable(result):
            result = await result
        return result


class ThreadPoolExecutor:
    """Plain functions run in a pool of ``max_workers`` threads; coroutine functions on the loop,
    with at most ``max_workers`` running at once either way."""

    def __init__(self, max_workers: int = 10) -> None:
        if max_workers < 1:
            raise ConfigurationError(f"threadpool max_workers must be >= 1, got {max_workers}")
        self.max_workers = max_workers
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._slots = asyncio.Semaphore(max_workers)

    async def start(self) -> None:
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(
                self.max_workers, thread_name_prefix="backbeat"
            )

    async def shutdown(self, wait: bool = True) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await asyncio.get_running_loop().run_in_executor(
                None, functools.partial(pool.shutdown, wait=wait)
            )

    async def submit(self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        async with self._slots:
            if _is_async(func):
                return await _call_maybe_async(func, args, kwargs)
            await self.start()
            assert self._pool is not None
            ctx = contextvars.copy_context()
            call = functools.partial(ctx.run, func, *args, **kwargs)
            return await asyncio.get_running_loop().run_in_executor(self._pool, call)


class CustomTaskExecutor:
    """Base for your own executor: override ``execute_task(task_func, *args, **kwargs)``.

    Whatever ``execute_task`` returns is the run's result; if it raises, the run failed.
    """

    def __init__(self) -> None:
        pass

    async def start(self) -> None:
        pass

    async def shutdown(self, wait: bool = True) -> None:
        pass

    async def execute_task(self, task_func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await _call_maybe_async(task_func, args, kwargs)

    async def submit(self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if _is_async(func):
            return await self.execute_task(func, *args, **kwargs)

        async def as_coroutine(*a: Any, **kw: Any) -> Any:
            return await AsyncIOExecutor().submit(func, a, kw)

        return await self.execute_task(as_coroutine, *args, **kwargs)
