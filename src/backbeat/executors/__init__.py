"""Where a run's callable executes: the event loop, a thread pool, a process pool, or your own."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from backbeat.abc import Executor
from backbeat.errors import ConfigurationError
from backbeat.executors.local import AsyncIOExecutor, CustomTaskExecutor, ThreadPoolExecutor
from backbeat.executors.processes import ProcessPoolExecutor

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


__all__ = [
    "AsyncIOExecutor",
    "CustomTaskExecutor",
    "ProcessPoolExecutor",
    "ThreadPoolExecutor",
    "make_executor",
]
