"""Failure and success handlers (``TaskFailureHandler``) and the context they are called with."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskExecutionResult:
    """How one run of a task went, as handlers and metrics see it."""

    task_id: str
    task_name: str
    run_id: str
    success: bool
    result: Any = None
    exception: BaseException | None = None
    execution_time: float = 0.0
    retry_count: int = 0
    will_retry: bool = False


class TaskFailureHandler:
    """Subclass and override; register with ``scheduler.add_failure_handler`` or in the service
    collection. Called after every run in the process that ran it; an exception it raises is
    logged, never propagated into the scheduler."""

    async def handle_task_failure(
        self, task_name: str, exception: Exception, context: dict[str, Any]
    ) -> None:
        """A run failed (``context["will_retry"]`` tells whether another attempt follows)."""

    async def handle_task_success(self, task_name: str, result: Any, context: dict[str, Any]) -> None:
        """A run succeeded."""


def handler_context(
    *,
    task_id: str,
    task_name: str,
    run_id: str,
    fire_time: datetime,
    attempt: int,
    execution_time: float,
    tags: tuple[str, ...],
    data: Mapping[str, Any] | None,
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    func: Callable[..., Any] | None,
    will_retry: bool = False,
    dead_letter: bool = False,
) -> dict[str, Any]:
    """The ``context`` dict of a handler call.

    Besides the run's facts it carries the job's arguments by parameter name (so a task
    scheduled with ``args=[order_id]`` gives ``context["order_id"]``) and the business data of
    a ``@backgroundjob`` instance; those never overwrite the run's own keys.
    """
    context: dict[str, Any] = {}
    context.update(data or {})
    context.update(_arguments_by_name(func, args, kwargs))
    context.update(
        task_id=task_id,
        task_name=task_name,
        run_id=run_id,
        fire_time=fire_time,
        attempt=attempt,
        retry_count=attempt - 1,
        execution_time=execution_time,
        tags=list(tags),
        data=dict(data or {}),
        args=list(args),
        kwargs=dict(kwargs),
        will_retry=will_retry,
        dead_letter=dead_letter,
    )
    return context


def _arguments_by_name(
    func: Callable[..., Any] | None, args: tuple[Any, ...], kwargs: Mapping[str, Any]
) -> dict[str, Any]:
    if func is None:
        return dict(kwargs)
    try:
        bound = inspect.signature(func).bind_partial(*args, **kwargs)
    except (TypeError, ValueError):
        return dict(kwargs)
    named = dict(bound.arguments)
    for name, param in inspect.signature(func).parameters.items():
        if param.kind is inspect.Parameter.VAR_KEYWORD and name in named:
            named.update(named.pop(name))
        elif param.kind is inspect.Parameter.VAR_POSITIONAL:
            named.pop(name, None)
    return named
