"""Where a run's callable executes: the event loop, a thread pool, a process pool, or your own."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import functools
import inspect
import multiprocessing
import weakref
from collections.abc import Callable, Mapping
from typing import Any

from backbeat.abc import Executor
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
    known = _ASYNC.get(plain)
    if known is None:
        call = getattr(target, "__call__", None)  # noqa: B004 - an async __call__ makes an object async
        known = inspect.iscoroutinefunction(target) or inspect.iscoroutinefunction(call)
        with contextlib.suppress(TypeError):  # not weak-referenceable: not cached
            _ASYNC[plain] = known
    return known


_ASYNC: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()


class AsyncIOExecutor:
    """Default: coroutine functions run on the event loop, plain functions in the loop's default threads."""

    async def start(self) -> None:
        pass

    async def shutdown(self, wait: bool = True) -> None:
        pass

    async def submit(self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if _is_async(func):
            return await _call_maybe_async(func, args, kwargs)
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


def _run_in_child(job_ref: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    from backbeat.model.codec import resolve_import_path

    func = resolve_import_path(job_ref)
    result = func(*args, **kwargs)
    if inspect.isawaitable(result):
        result = asyncio.run(_await(result))
    return result


async def _await(awaitable: Any) -> Any:
    return await awaitable


class ProcessPoolExecutor:
    """Runs module-level functions in ``max_workers`` child processes (spawned, so no forked locks).

    Only functions with an import path can cross a process boundary; their arguments are the
    decoded task arguments. A job that needs the service provider should not use this executor.
    """

    def __init__(self, max_workers: int = 2) -> None:
        if max_workers < 1:
            raise ConfigurationError(f"processpool max_workers must be >= 1, got {max_workers}")
        self.max_workers = max_workers
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None

    async def start(self) -> None:
        if self._pool is None:
            ctx = multiprocessing.get_context("spawn")
            self._pool = concurrent.futures.ProcessPoolExecutor(self.max_workers, mp_context=ctx)

    async def shutdown(self, wait: bool = True) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await asyncio.get_running_loop().run_in_executor(
                None, functools.partial(pool.shutdown, wait=wait)
            )

    async def submit(self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        from backbeat.model.codec import import_path

        if inspect.ismethod(func) or "<locals>" in func.__qualname__ or "<lambda>" in func.__qualname__:
            raise ConfigurationError(
                f"{func.__qualname__} cannot run in a process pool: only module-level functions can"
            )
        await self.start()
        assert self._pool is not None
        call = functools.partial(_run_in_child, import_path(func), args, kwargs)
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


_EXECUTOR_TYPES: dict[str, Callable[..., Executor]] = {
    "asyncio": AsyncIOExecutor,
    "threadpool": ThreadPoolExecutor,
    "processpool": ProcessPoolExecutor,
}


def make_executor(spec: Executor | Mapping[str, Any]) -> Executor:
    """An executor from an instance or an APScheduler-style dict.

    The dict form is ``{'type': 'threadpool', 'max_workers': 20}``.

    Raises:
        ConfigurationError: unknown ``type`` or invalid options.
    """
    if isinstance(spec, Executor):
        return spec
    if not isinstance(spec, Mapping):
        raise ConfigurationError(f"an executor must be an Executor or a dict with 'type', got {spec!r}")
    options = dict(spec)
    kind = options.pop("type", options.pop("class", "asyncio"))
    factory = _EXECUTOR_TYPES.get(str(kind))
    if factory is None:
        raise ConfigurationError(
            f"unknown executor type {kind!r}; known: {', '.join(sorted(_EXECUTOR_TYPES))}"
        )
    try:
        return factory(**options)
    except TypeError as exc:
        raise ConfigurationError(f"invalid options for executor type {kind!r}: {exc}") from exc
