"""OpenTelemetry metrics of runs, and :func:`instrument_scheduler` (metrics and traces at once).

Instruments (meter ``backbeat``), named as OpenTelemetry's semantic conventions name theirs
(``{namespace}.{thing}.{measure}``, UCUM units, ``{run}`` annotations, no ``_total``):

=========================  ==============  ======  =====================================================
name                       instrument      unit    attributes
=========================  ==============  ======  =====================================================
``backbeat.run.duration``  Histogram       ``s``   ``backbeat.task.name``, ``backbeat.outcome``,
                                                   ``error.type`` (failures)
``backbeat.run.count``     Counter         {run}   same: one per finished run (success/failure/cancelled)
``backbeat.run.active``    UpDownCounter   {run}   ``backbeat.task.name``: runs executing now
``backbeat.run.lateness``  Histogram       ``s``   ``backbeat.task.name``: start minus fire time, first
                                                   attempts only (a retry is late by its back-off)
``backbeat.fire_time.*``   Counter         {fire   ``backbeat.task.name``: fire times that did not run,
                                           time}   ``.missed`` (older than the catch-up window),
                                                   ``.coalesced`` (folded into a later one's run),
                                                   ``.skipped`` (overlap refused: ``max_instances``)
``backbeat.task.           Gauge           ``s``   ``backbeat.task.name``: when a run of the task last
last_success``                                     succeeded in this process (seconds since the epoch)
=========================  ==============  ======  =====================================================

A task name's last success is dropped once the recurring tasks of that name that succeeded in
this process are removed in this process (``TASK_REMOVED``); it is not exported for ever.

Every attribute is bounded by the number of task *names* (never task or run ids): give tasks
created per order or per user a shared name, as ``schedule_immediate_task("charge", ...)`` does.

A run is measured around the job's call (the engine's run hook): what happens before (resolving
the job, a circuit breaker deferring it) is not a run of the job and is not counted. Fire times
that do not run are counted from the scheduler's events (``RUN_MISSED``, ``RUN_COALESCED``,
``RUN_SKIPPED``, ``MAX_INSTANCES``) by the process that decided them.
opentelemetry-api is optional (``pip install 'backbeat[otel]'``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any

from backbeat.errors import LeaseLostError
from backbeat.model.events import EventKind, SchedulerEvent
from backbeat.model.records import Run, Task, utcnow
from backbeat.observability.last_success import LastSuccess
from backbeat.observability.tracing import ParentMode, RunTracer, _qualname, _version, require_otel

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider

    from backbeat.abc import RunHook

TASK_NAME = "backbeat.task.name"
OUTCOME = "backbeat.outcome"

FIRE_TIME_EVENTS = {
    EventKind.RUN_MISSED: "missed",
    EventKind.RUN_COALESCED: "coalesced",
    EventKind.MAX_INSTANCES: "skipped",
    EventKind.RUN_SKIPPED: "skipped",
}
"""The events of fire times that did not run, and what each is counted as."""

LISTENED = [*FIRE_TIME_EVENTS, EventKind.TASK_REMOVED]
"""The events the metrics listen to: fire times that did not run, and removals (which drop the
removed task's last success)."""

DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
"""Explicit bucket boundaries (seconds) advised for the duration and lateness histograms."""


class RunMetrics:
    """A run hook recording the instruments of the module's table.

    ``clock`` gives the wall time compared with fire times (the scheduler's clock when attached
    by :func:`instrument_scheduler`); durations use a monotonic clock.
    """

    def __init__(
        self,
        meter_provider: MeterProvider | None = None,
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        require_otel("RunMetrics")
        from opentelemetry import metrics

        meter = metrics.get_meter("backbeat", _version(), meter_provider=meter_provider)
        self.meter = meter
        self.clock = clock
        self.duration = meter.create_histogram(
            "backbeat.run.duration",
            unit="s",
            description="Duration of job runs.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.count = meter.create_counter(
            "backbeat.run.count", unit="{run}", description="Finished job runs, by outcome."
        )
        self.active = meter.create_up_down_counter(
            "backbeat.run.active", unit="{run}", description="Job runs executing now in this process."
        )
        self.lateness = meter.create_histogram(
            "backbeat.run.lateness",
            unit="s",
            description="Time between a run's fire time and the start of its first attempt.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.not_run = {
            kind: meter.create_counter(
                f"backbeat.fire_time.{kind}", unit="{fire_time}", description=description
            )
            for kind, description in (
                ("missed", "Fire times older than the task's catch-up window: not run."),
                ("coalesced", "Fire times folded into the run of a later one (coalesce)."),
                ("skipped", "Fire times not run because the task's overlap policy refused them."),
            )
        }
        self.last_success = LastSuccess()
        meter.create_observable_gauge(
            "backbeat.task.last_success",
            callbacks=[self._observe_last_success],
            unit="s",
            description="When a run of the task last succeeded in this process (seconds since the epoch).",
        )

    def _observe_last_success(self, _: Any) -> list[Any]:
        from opentelemetry.metrics import Observation

        return [
            Observation(when, {TASK_NAME: name}) for name, when in list(self.last_success.by_name.items())
        ]

    def on_event(self, event: SchedulerEvent) -> None:
        """Count a fire time that did not run; forget a removed task's last success (a listener
        of :data:`LISTENED`)."""
        if event.kind == EventKind.TASK_REMOVED and event.task_id is not None:
            self.last_success.removed(event.task_id)
            return
        kind = FIRE_TIME_EVENTS.get(event.kind)
        if kind is not None and event.task_name is not None:
            self.not_run[kind].add(1, {TASK_NAME: event.task_name})

    def observe_due_lag(self, read: Callable[[], float]) -> None:
        """Report ``read()`` as ``backbeat.due.lag``: how long the oldest due work has waited to be
        claimed (the backlog gauge)."""
        from opentelemetry.metrics import CallbackOptions, Observation

        def observe(_: CallbackOptions) -> list[Observation]:
            return [Observation(read())]

        self.meter.create_observable_gauge(
            "backbeat.due.lag",
            callbacks=[observe],
            unit="s",
            description="How long the oldest due task or run has waited to be claimed.",
        )

    def __call__(self, task: Task, run: Run) -> _MeasuredRun:
        return _MeasuredRun(self, task, run)


class _MeasuredRun:
    __slots__ = ("_attrs", "_metrics", "_run", "_started", "_task")

    def __init__(self, metrics: RunMetrics, task: Task, run: Run) -> None:
        self._metrics, self._task, self._run = metrics, task, run
        self._attrs = {TASK_NAME: task.name}
        self._started = 0.0

    def __enter__(self) -> None:
        metrics, run = self._metrics, self._run
        if run.attempt == 1:
            late = (metrics.clock() - run.fire_time).total_seconds()
            metrics.lateness.record(max(late, 0.0), self._attrs)
        metrics.active.add(1, self._attrs)
        self._started = time.perf_counter()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        elapsed = time.perf_counter() - self._started
        metrics = self._metrics
        metrics.active.add(-1, self._attrs)
        attrs: dict[str, str] = {**self._attrs, OUTCOME: outcome_of(exc)}
        if exc is not None and not isinstance(exc, asyncio.CancelledError):
            attrs["error.type"] = _qualname(type(exc))
        metrics.duration.record(elapsed, attrs)
        metrics.count.add(1, attrs)
        if exc is None:
            metrics.last_success.succeeded(self._task, metrics.clock().timestamp())


def outcome_of(exc: BaseException | None) -> str:
    """``success``, ``failure``, ``cancelled`` or ``lease_lost``: how the job's call ended."""
    if exc is None:
        return "success"
    if isinstance(exc, LeaseLostError):
        return "lease_lost"
    return "cancelled" if isinstance(exc, asyncio.CancelledError) else "failure"


class Instrumentation:
    """What :func:`instrument_scheduler` registered: the hooks, to inspect or reuse."""

    def __init__(self, metrics: RunMetrics | None, tracer: RunTracer | None) -> None:
        self.metrics = metrics
        self.tracer = tracer

    @property
    def hooks(self) -> list[RunHook]:
        """The run hooks, tracer first (so the run's span is current while metrics are taken)."""
        return [hook for hook in (self.tracer, self.metrics) if hook is not None]


def instrument_scheduler(
    scheduler: Any,
    meter_provider: MeterProvider | None = None,
    tracer_provider: Any = None,
    *,
    metrics: bool = True,
    traces: bool = True,
    parent: ParentMode = "auto",
) -> Instrumentation:
    """Record OpenTelemetry metrics and a span for every run ``scheduler`` executes.

    Call it before ``scheduler.start()``. Providers default to the global ones
    (``opentelemetry.metrics.set_meter_provider`` / ``trace.set_tracer_provider``). Tasks
    scheduled while a span is current carry its trace context whether or not the producing
    scheduler is instrumented; ``parent`` is :class:`~backbeat.observability.tracing.RunTracer`'s.

    Raises:
        ConfigurationError: opentelemetry-api is not installed (``pip install 'backbeat[otel]'``).
    """
    require_otel("instrument_scheduler")
    tracer = RunTracer(tracer_provider, parent=parent) if traces else None
    run_metrics = RunMetrics(meter_provider, clock=getattr(scheduler, "clock", utcnow)) if metrics else None
    if run_metrics is not None and hasattr(scheduler, "due_lag"):
        run_metrics.observe_due_lag(scheduler.due_lag)
    if run_metrics is not None and hasattr(scheduler, "add_listener"):
        scheduler.add_listener(run_metrics.on_event, LISTENED)
    done = Instrumentation(run_metrics, tracer)
    for hook in done.hooks:
        scheduler.add_run_hook(hook)
    return done


__all__ = [
    "DURATION_BUCKETS",
    "FIRE_TIME_EVENTS",
    "LISTENED",
    "Instrumentation",
    "RunMetrics",
    "instrument_scheduler",
    "outcome_of",
]
