"""OpenTelemetry traces: one span per run, joined to the trace that scheduled the task.

At schedule time :func:`capture_trace_context` stores the W3C ``traceparent`` (and
``tracestate``/baggage, whatever the global propagator writes) in ``Task.trace_context``. At run
time :class:`RunTracer` extracts it, in whichever process claims the run:

* a **one-shot** task (a date trigger: ``schedule_delayed_task``, ``schedule_at``,
  ``schedule_immediate_task``) gets a run span that is a *child* of the span that scheduled it, so
  one trace goes from the HTTP request that placed an order to the job that fired minutes later in
  a worker. Retries and take-overs of that run are children of the same span.
* a **recurring** task gets a new trace per run with a *link* to the scheduling span: a job that
  fires every five minutes for months would otherwise grow one endless trace.

``parent="child"`` or ``parent="link"`` forces one of the two. opentelemetry-api is optional
(``pip install 'backbeat[otel]'``): without it nothing is captured and :func:`trace_runs` says
what to install.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib.util
from collections.abc import Callable
from contextvars import Token
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

from backbeat.errors import ConfigurationError
from backbeat.model import triggers
from backbeat.model.records import Run, Task

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.trace import Span, Tracer, TracerProvider

ParentMode = Literal["auto", "child", "link"]

INSTRUMENTATION_NAME = "backbeat"
SPAN_NAME_PREFIX = "backbeat.run"
"""Run spans are named ``backbeat.run <task name>``."""

_HAS_OTEL = importlib.util.find_spec("opentelemetry") is not None and (
    importlib.util.find_spec("opentelemetry.propagate") is not None
)


def otel_available() -> bool:
    """Whether opentelemetry-api can be imported."""
    return _HAS_OTEL


def require_otel(what: str) -> None:
    """Fail with an install hint when opentelemetry-api is missing.

    Raises:
        ConfigurationError: opentelemetry-api is not installed.
    """
    if not _HAS_OTEL:
        raise ConfigurationError(
            f"{what} needs opentelemetry-api: pip install 'backbeat[otel]' "
            "(and an SDK such as opentelemetry-sdk to export anything)"
        )


def capture_trace_context() -> dict[str, str] | None:
    """The current trace context as propagation headers (``{"traceparent": ...}``), or ``None``
    when opentelemetry is not installed or no span is recording here."""
    if not _HAS_OTEL:
        return None
    current_context, current_span, inject = _capture_api()
    context = current_context()
    if not context:
        return None  # nothing attached here (no span, no baggage): the common add, answered at once
    if not current_span(context).get_span_context().is_valid:
        return None  # no trace to join: do not store baggage-only carriers on every task
    carrier: dict[str, str] = {}
    inject(carrier, context)
    return carrier or None


@functools.cache
def _capture_api() -> tuple[
    Callable[[], Context], Callable[[Context], Span], Callable[[dict[str, str], Context], None]
]:
    """opentelemetry's ``get_current`` (context), ``get_current_span`` and ``inject``, imported at
    the first task built (an import statement at every add cost as much as the capture itself)."""
    from opentelemetry import context, propagate, trace

    return context.get_current, trace.get_current_span, propagate.inject


def extract_trace_context(carrier: dict[str, str] | None) -> Context:
    """The OpenTelemetry context stored with a task (an empty context when it has none)."""
    from opentelemetry import propagate
    from opentelemetry.context import Context

    if not carrier:
        return Context()
    return propagate.extract(carrier, context=Context())


class RunTracer:
    """A run hook making one ``CONSUMER`` span per run (see the module's docstring).

    The span is current while the job runs, so spans the job makes are its children. A failed run
    records the exception and sets the span's status to ``ERROR``; a cancelled run (shutdown,
    ``cancel_run``) is marked ``backbeat.outcome=cancelled`` without an error status.
    """

    def __init__(self, tracer_provider: TracerProvider | None = None, *, parent: ParentMode = "auto") -> None:
        require_otel("RunTracer")
        from opentelemetry import trace

        if parent not in ("auto", "child", "link"):
            raise ConfigurationError(f"parent must be 'auto', 'child' or 'link', not {parent!r}")
        self.parent: ParentMode = parent
        self.tracer: Tracer = trace.get_tracer(
            INSTRUMENTATION_NAME, _version(), tracer_provider=tracer_provider
        )

    def __call__(self, task: Task, run: Run) -> contextlib.AbstractContextManager[object]:
        return _RunSpan(self, task, run)

    def start_span(self, task: Task, run: Run) -> Span:
        """Start (not activate) the span of ``run``, parented or linked as configured."""
        from opentelemetry import trace
        from opentelemetry.context import Context

        stored = extract_trace_context(task.trace_context)
        scheduling = trace.get_current_span(stored).get_span_context()
        as_child = self.parent == "child" or (self.parent == "auto" and triggers.is_one_shot(task.trigger))
        links = [] if as_child or not scheduling.is_valid else [trace.Link(scheduling)]
        # Never the engine task's own context: whatever span was current when the scheduler
        # started would otherwise become the parent of every run.
        parent_context = stored if as_child else Context()
        return self.tracer.start_span(
            f"{SPAN_NAME_PREFIX} {task.name}",
            context=parent_context,
            kind=trace.SpanKind.CONSUMER,
            attributes=run_attributes(task, run),
            links=links,
        )


def run_attributes(task: Task, run: Run) -> dict[str, str | int]:
    """Span attributes describing ``run`` of ``task``."""
    return {
        "backbeat.task.id": task.id,
        "backbeat.task.name": task.name,
        "backbeat.run.id": run.id,
        "backbeat.run.attempt": run.attempt,
        "backbeat.run.fire_time": run.fire_time.isoformat(),
    }


class _RunSpan:
    __slots__ = ("_run", "_span", "_task", "_token", "_tracer")

    def __init__(self, tracer: RunTracer, task: Task, run: Run) -> None:
        self._tracer, self._task, self._run = tracer, task, run
        self._span: Span | None = None
        self._token: Token[Context] | None = None

    def __enter__(self) -> Span:
        from opentelemetry import context, trace

        self._span = span = self._tracer.start_span(self._task, self._run)
        self._token = context.attach(trace.set_span_in_context(span))
        return span

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        from opentelemetry import context
        from opentelemetry.trace import Status, StatusCode

        span = self._span
        assert span is not None
        try:
            if exc is None:
                span.set_attribute("backbeat.outcome", "success")
            elif isinstance(exc, asyncio.CancelledError):
                span.set_attribute("backbeat.outcome", "cancelled")
            else:
                span.set_attribute("backbeat.outcome", "failure")
                span.set_attribute("error.type", _qualname(type(exc)))
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
        finally:
            span.end()
            if self._token is not None:
                context.detach(self._token)


def trace_runs(
    scheduler: Any, tracer_provider: TracerProvider | None = None, *, parent: ParentMode = "auto"
) -> RunTracer:
    """Make a span for every run ``scheduler`` executes (call before it starts); returns the hook.

    Raises:
        ConfigurationError: opentelemetry-api is not installed.
    """
    tracer = RunTracer(tracer_provider, parent=parent)
    add: Callable[[RunTracer], None] = scheduler.add_run_hook
    add(tracer)
    return tracer


def _qualname(cls: type[BaseException]) -> str:
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("backbeat")
    except PackageNotFoundError:
        return "0"
