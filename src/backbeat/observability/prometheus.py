"""Prometheus exposition of runs with prometheus_client, and an ASGI endpoint to mount.

::

    from backbeat.observability.prometheus import PrometheusMetrics, metrics_app

    prom = PrometheusMetrics().attach(scheduler)      # before scheduler.start()
    app.mount("/metrics", metrics_app(prom))           # FastAPI / Starlette

Metrics (each process its own; Prometheus sums them across targets), on a registry of their own
(``prom.registry``) so they never clash with an application's default registry:

* ``backbeat_runs_total{task, outcome}`` counter;
* ``backbeat_run_duration_seconds{task, outcome}`` histogram;
* ``backbeat_run_lateness_seconds{task}`` histogram (start minus fire time, first attempts);
* ``backbeat_active_runs{task}`` gauge;
* ``backbeat_missed_fire_times_total{task}``, ``backbeat_coalesced_fire_times_total{task}`` and
  ``backbeat_skipped_fire_times_total{task}`` counters: fire times that did not run (older than
  the catch-up window; folded into a later one's run; refused by the overlap policy);
* ``backbeat_task_last_success_timestamp{task}`` gauge: when a run of the task last succeeded
  in this process, in seconds since the epoch (alert on ``time() - max by (task) (...)``); its
  series goes once the recurring tasks of that name that succeeded here are removed here;
* with ``task_metrics=``, every counter and gauge of a :class:`~backbeat.taskmetrics.TaskMetrics`
  as ``backbeat_task_metric{name}`` (gauge).

The ``task`` label is the task's *name*, never its id, so the number of series is bounded by
the names an application uses (give tasks created per order or per user a shared name).

prometheus_client is optional: ``pip install 'backbeat[prometheus]'``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any

from backbeat.errors import ConfigurationError
from backbeat.model.events import EventKind, SchedulerEvent
from backbeat.model.records import Run, Task, utcnow
from backbeat.observability.last_success import LastSuccess
from backbeat.observability.metrics import DURATION_BUCKETS, FIRE_TIME_EVENTS, LISTENED, outcome_of
from backbeat.observability.taskmetrics import TaskMetrics

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics_core import Metric


def _require_prometheus() -> None:
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        raise ConfigurationError(
            "the Prometheus exposition needs prometheus_client: pip install 'backbeat[prometheus]'"
        ) from None


class PrometheusMetrics:
    """A run hook counting runs into prometheus_client metrics on their own registry.

    Raises:
        ConfigurationError: prometheus_client is not installed.
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        namespace: str = "backbeat",
        buckets: Iterable[float] = DURATION_BUCKETS,
        task_metrics: TaskMetrics | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        _require_prometheus()
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry: CollectorRegistry = registry if registry is not None else CollectorRegistry()
        self.clock = clock
        bounds = tuple(buckets)
        self.runs = Counter(
            "runs",
            "Finished job runs, by outcome.",
            ["task", "outcome"],
            namespace=namespace,
            registry=self.registry,
        )
        self.duration = Histogram(
            "run_duration_seconds",
            "Duration of job runs.",
            ["task", "outcome"],
            namespace=namespace,
            registry=self.registry,
            buckets=bounds,
        )
        self.lateness = Histogram(
            "run_lateness_seconds",
            "Start minus fire time of first attempts.",
            ["task"],
            namespace=namespace,
            registry=self.registry,
            buckets=bounds,
        )
        self.active = Gauge(
            "active_runs",
            "Job runs executing now in this process.",
            ["task"],
            namespace=namespace,
            registry=self.registry,
        )
        self.due_lag = Gauge(
            "due_lag_seconds",
            "How long the oldest due task or run has waited to be claimed.",
            namespace=namespace,
            registry=self.registry,
        )
        self.not_run = {
            kind: Counter(
                f"{kind}_fire_times",
                description,
                ["task"],
                namespace=namespace,
                registry=self.registry,
            )
            for kind, description in (
                ("missed", "Fire times older than the task's catch-up window: not run."),
                ("coalesced", "Fire times folded into the run of a later one (coalesce)."),
                ("skipped", "Fire times not run because the task's overlap policy refused them."),
            )
        }
        self.last_success = Gauge(
            "task_last_success_timestamp",
            "When a run of the task last succeeded in this process (seconds since the epoch).",
            ["task"],
            namespace=namespace,
            registry=self.registry,
        )
        self._successes = LastSuccess()
        if task_metrics is not None:
            self.registry.register(_TaskMetricsCollector(task_metrics, f"{namespace}_task_metric"))

    def __call__(self, task: Task, run: Run) -> _PromRun:
        return _PromRun(self, task, run)

    def attach(self, scheduler: Any) -> PrometheusMetrics:
        """Count every run ``scheduler`` executes (call before it starts); uses its clock."""
        self.clock = getattr(scheduler, "clock", self.clock)
        scheduler.add_run_hook(self)
        if hasattr(scheduler, "due_lag"):
            self.due_lag.set_function(scheduler.due_lag)
        if hasattr(scheduler, "add_listener"):
            scheduler.add_listener(self.on_event, LISTENED)
        return self

    def on_event(self, event: SchedulerEvent) -> None:
        """Count a fire time that did not run; drop a removed task's last-success series (a
        listener of ``LISTENED``)."""
        if event.kind == EventKind.TASK_REMOVED and event.task_id is not None:
            gone = self._successes.removed(event.task_id)
            if gone is not None:
                self.last_success.remove(gone)
            return
        kind = FIRE_TIME_EVENTS.get(event.kind)
        if kind is not None and event.task_name is not None:
            self.not_run[kind].labels(event.task_name).inc()

    def exposition(self) -> bytes:
        """The registry in Prometheus text format (what ``/metrics`` serves)."""
        from prometheus_client import generate_latest

        return generate_latest(self.registry)

    def asgi_app(self) -> Callable[..., Any]:
        """An ASGI app serving :meth:`exposition` (mount it at ``/metrics``)."""
        return metrics_app(self)


class _PromRun:
    __slots__ = ("_prom", "_run", "_started", "_task", "_task_name")

    def __init__(self, prom: PrometheusMetrics, task: Task, run: Run) -> None:
        self._prom, self._run, self._task, self._task_name = prom, run, task, task.name
        self._started = 0.0

    def __enter__(self) -> None:
        prom = self._prom
        if self._run.attempt == 1:
            late = (prom.clock() - self._run.fire_time).total_seconds()
            prom.lateness.labels(self._task_name).observe(max(late, 0.0))
        prom.active.labels(self._task_name).inc()
        self._started = time.perf_counter()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        elapsed = time.perf_counter() - self._started
        prom, outcome = self._prom, outcome_of(exc)
        prom.active.labels(self._task_name).dec()
        prom.duration.labels(self._task_name, outcome).observe(elapsed)
        prom.runs.labels(self._task_name, outcome).inc()
        if exc is None:
            when = prom.clock().timestamp()
            renamed_from = prom._successes.succeeded(self._task, when)
            if renamed_from is not None:
                prom.last_success.remove(renamed_from)
            if self._task_name in prom._successes.by_name:  # not the last run of a removed task
                prom.last_success.labels(self._task_name).set(when)


class _TaskMetricsCollector:
    """Exposes a :class:`TaskMetrics` (counters and gauges) as one labelled gauge family."""

    def __init__(self, metrics: TaskMetrics, name: str) -> None:
        self.metrics = metrics
        self.name = name

    def collect(self) -> Iterable[Metric]:
        from prometheus_client.core import GaugeMetricFamily

        family = GaugeMetricFamily(self.name, "backbeat TaskMetrics counters and gauges.", labels=["name"])
        for key, value in sorted(self.metrics.snapshot().items()):
            family.add_metric([key], float(value))
        yield family

    def describe(self) -> Iterable[Metric]:
        return []


def metrics_app(source: PrometheusMetrics | CollectorRegistry | None = None) -> Callable[..., Any]:
    """An ASGI app serving a registry in Prometheus format, to mount in FastAPI/Starlette
    (``app.mount("/metrics", metrics_app(prom))``). Without ``source``: prometheus_client's
    default registry.

    Raises:
        ConfigurationError: prometheus_client is not installed.
    """
    _require_prometheus()
    from prometheus_client import REGISTRY, make_asgi_app

    registry = source.registry if isinstance(source, PrometheusMetrics) else source
    return make_asgi_app(registry=registry if registry is not None else REGISTRY)


__all__ = ["PrometheusMetrics", "metrics_app"]
