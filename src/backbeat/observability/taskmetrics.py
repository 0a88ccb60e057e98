"""``TaskMetrics`` and ``MetricsCollector``: named counters and gauges kept in this process.

No dependency: the numbers live in this process. Attached to a scheduler
(:meth:`TaskMetrics.attach`, :meth:`MetricsCollector.attach`), runs feed them:

* counters ``task_runs``, ``task_successes``, ``task_failures``, ``task_cancellations``, and
  ``missed_fire_times``, ``coalesced_fire_times``, ``skipped_fire_times`` (fire times that did not
  run: older than the catch-up window, folded into a later run, refused by the overlap policy);
* gauges ``active_tasks`` (runs executing now) and ``avg_task_duration`` (seconds);
* ``task_duration`` observations (:meth:`TaskMetrics.get_average`, :meth:`TaskMetrics.get_summary`).

Applications add their own (``increment("orders_processed")``, ``set_gauge("queue_size", n)``).
For dashboards across processes use :mod:`backbeat.metrics` (OpenTelemetry) or
:mod:`backbeat.prometheus`.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from backbeat.errors import LeaseLostError
from backbeat.model.events import EventKind, SchedulerEvent
from backbeat.model.records import Run, Task


@dataclass(slots=True)
class Summary:
    """Count, sum, min and max of the values observed under one name."""

    count: int = 0
    total: float = 0.0
    minimum: float = 0.0
    maximum: float = 0.0

    @property
    def average(self) -> float:
        """Mean of the observations (0 when there are none)."""
        return self.total / self.count if self.count else 0.0


class TaskMetrics:
    """Thread-safe named counters (only go up), gauges (set to a value) and observations."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[str, float] = {}
        self._gauges: dict[str, float] = {}
        self._summaries: dict[str, Summary] = {}

    def increment(self, name: str, amount: float = 1) -> float:
        """Add ``amount`` (>= 0) to counter ``name``; returns its new value.

        Raises:
            ValueError: ``amount`` is negative (a counter only goes up; use a gauge).
        """
        if amount < 0:
            raise ValueError(f"counter {name!r} only goes up; got {amount} (use a gauge)")
        with self._lock:
            value = self._counters[name] = self._counters.get(name, 0) + amount
            return value

    def get_counter(self, name: str) -> float:
        """Counter ``name`` (0 if never incremented)."""
        return self._counters.get(name, 0)

    def set_gauge(self, name: str, value: float) -> None:
        """Set gauge ``name`` to ``value``."""
        with self._lock:
            self._gauges[name] = value

    def add_to_gauge(self, name: str, delta: float) -> float:
        """Move gauge ``name`` by ``delta`` (up or down); returns its new value."""
        with self._lock:
            value = self._gauges[name] = self._gauges.get(name, 0) + delta
            return value

    def get_gauge(self, name: str) -> float:
        """Gauge ``name`` (0 if never set)."""
        return self._gauges.get(name, 0)

    def observe(self, name: str, value: float) -> None:
        """Record one observation (a duration, a size) under ``name``."""
        with self._lock:
            summary = self._summaries.get(name)
            if summary is None:
                self._summaries[name] = Summary(1, value, value, value)
                return
            summary.count += 1
            summary.total += value
            summary.minimum = min(summary.minimum, value)
            summary.maximum = max(summary.maximum, value)

    def get_average(self, name: str) -> float:
        """Mean of the observations of ``name`` (0 if none)."""
        summary = self._summaries.get(name)
        return summary.average if summary is not None else 0.0

    def get_summary(self, name: str) -> Summary:
        """Count, sum, min and max of the observations of ``name`` (a copy)."""
        with self._lock:
            found = self._summaries.get(name)
            return Summary(found.count, found.total, found.minimum, found.maximum) if found else Summary()

    def snapshot(self) -> dict[str, float]:
        """Every counter and gauge by name, plus ``<name>_avg`` / ``<name>_count`` per observation."""
        with self._lock:
            values: dict[str, float] = {**self._counters, **self._gauges}
            for name, summary in self._summaries.items():
                values[f"{name}_avg"] = summary.average
                values[f"{name}_count"] = summary.count
            return values

    def reset(self) -> None:
        """Forget everything."""
        with self._lock:
            self._counters.clear()
            self._gauges.clear()
            self._summaries.clear()

    def run_hook(self, task: Task, run: Run) -> _CountedRun:
        """A run hook (``scheduler.add_run_hook(metrics.run_hook)``) feeding the built-in names."""
        return _CountedRun(self)

    def attach(self, scheduler: Any) -> TaskMetrics:
        """Feed these metrics from every run ``scheduler`` executes (call before it starts) and
        from the fire times it decides not to run."""
        scheduler.add_run_hook(self.run_hook)
        if hasattr(scheduler, "add_listener"):
            scheduler.add_listener(self.on_event, list(_NOT_RUN))
        return self

    def on_event(self, event: SchedulerEvent) -> None:
        """Count a fire time that did not run (missed, coalesced or skipped)."""
        name = _NOT_RUN.get(event.kind)
        if name is not None:
            self.increment(name)


_NOT_RUN = {
    EventKind.RUN_MISSED: "missed_fire_times",
    EventKind.RUN_COALESCED: "coalesced_fire_times",
    EventKind.MAX_INSTANCES: "skipped_fire_times",
    EventKind.RUN_SKIPPED: "skipped_fire_times",
}


class _CountedRun:
    __slots__ = ("_metrics", "_started")

    def __init__(self, metrics: TaskMetrics) -> None:
        self._metrics = metrics
        self._started = 0.0

    def __enter__(self) -> None:
        self._metrics.add_to_gauge("active_tasks", 1)
        self._started = time.perf_counter()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        metrics = self._metrics
        elapsed = time.perf_counter() - self._started
        metrics.add_to_gauge("active_tasks", -1)
        metrics.increment("task_runs")
        if exc is None:
            metrics.increment("task_successes")
        elif isinstance(exc, LeaseLostError):
            metrics.increment("task_lease_losses")
        elif isinstance(exc, asyncio.CancelledError):
            metrics.increment("task_cancellations")
        else:
            metrics.increment("task_failures")
        metrics.observe("task_duration", elapsed)
        metrics.set_gauge("avg_task_duration", metrics.get_average("task_duration"))


class MetricsCollector:
    """Base of an application's metrics collector (e.g. a ``PizzaOrderMetrics`` with its own counters).

    A subclass sets ``self.metrics = TaskMetrics()`` in its ``__init__`` (calling
    ``super().__init__()`` is optional) and adds its own ``collect_*`` methods.
    """

    metrics: TaskMetrics

    def __init__(self, metrics: TaskMetrics | None = None) -> None:
        self.metrics = metrics if metrics is not None else TaskMetrics()

    def _task_metrics(self) -> TaskMetrics:
        found = getattr(self, "metrics", None)
        if not isinstance(found, TaskMetrics):
            found = self.metrics = TaskMetrics()
        return found

    def attach(self, scheduler: Any) -> MetricsCollector:
        """Feed ``self.metrics`` from every run ``scheduler`` executes (call before it starts)."""
        self._task_metrics().attach(scheduler)
        return self

    async def collect_metrics(self) -> dict[str, float]:
        """The metrics to report; by default every counter and gauge (see
        :meth:`TaskMetrics.snapshot`). Override to pick and rename."""
        return self._task_metrics().snapshot()

    def prometheus_text(self, prefix: str = "backbeat_") -> str:
        """``self.metrics``' counters and gauges as Prometheus text lines (``<prefix><name> <value>``)."""
        snapshot = self._task_metrics().snapshot()
        return "\n".join(f"{prefix}{_metric_name(name)} {value}" for name, value in snapshot.items())


def _metric_name(name: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "_:" else "_" for c in name)
    return cleaned if cleaned and not cleaned[0].isdigit() else f"_{cleaned}"


__all__ = ["MetricsCollector", "Summary", "TaskMetrics"]
