"""TaskMetrics / MetricsCollector (seed 003), trace-context capture, the optional-dependency errors."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from opentelemetry.sdk.trace import TracerProvider

import backbeat.observability.tracing
from backbeat import ConfigurationError, MetricsCollector, TaskMetrics, instrument_scheduler
from backbeat.model.events import EventHub, EventKind, SchedulerEvent
from backbeat.model.records import Run, Task
from backbeat.observability.prometheus import PrometheusMetrics
from backbeat.observability.tracing import capture_trace_context, extract_trace_context

# -- seed 003, "Task Execution Metrics", verbatim but for the import (and mypy's ignores) ---------


class PizzaOrderMetrics(MetricsCollector):
    def __init__(self):  # type: ignore[no-untyped-def]
        self.metrics = TaskMetrics()

    async def collect_order_metrics(self):  # type: ignore[no-untyped-def]
        """Collect pizza order processing metrics."""
        return {
            "total_orders_processed": self.metrics.get_counter("orders_processed"),
            "average_preparation_time": self.metrics.get_gauge("avg_prep_time"),
            "failed_tasks_count": self.metrics.get_counter("task_failures"),
            "active_tasks": self.metrics.get_gauge("active_tasks"),
            "task_queue_size": self.metrics.get_gauge("queue_size"),
        }

    async def export_metrics_to_prometheus(self):  # type: ignore[no-untyped-def]
        """Export metrics in Prometheus format."""
        metrics = await self.collect_order_metrics()  # type: ignore[no-untyped-call]

        prometheus_metrics = []
        for metric_name, value in metrics.items():
            prometheus_metrics.append(f"mario_pizzeria_{metric_name} {value}")

        return "\n".join(prometheus_metrics)


# ------------------------------------------------------------------------------------------------


async def test_the_seed_collector_reports_its_numbers() -> None:
    collector = PizzaOrderMetrics()  # type: ignore[no-untyped-call]
    assert await collector.export_metrics_to_prometheus() == "\n".join(  # type: ignore[no-untyped-call]
        [
            "mario_pizzeria_total_orders_processed 0",
            "mario_pizzeria_average_preparation_time 0",
            "mario_pizzeria_failed_tasks_count 0",
            "mario_pizzeria_active_tasks 0",
            "mario_pizzeria_task_queue_size 0",
        ]
    )
    collector.metrics.increment("orders_processed")
    collector.metrics.increment("orders_processed", 2)
    collector.metrics.set_gauge("avg_prep_time", 12.5)
    collector.metrics.set_gauge("queue_size", 4)
    text = await collector.export_metrics_to_prometheus()  # type: ignore[no-untyped-call]
    assert "mario_pizzeria_total_orders_processed 3" in text
    assert "mario_pizzeria_average_preparation_time 12.5" in text
    assert "mario_pizzeria_task_queue_size 4" in text


def task_and_run(name: str = "bake", *, attempt: int = 1) -> tuple[Task, Run]:
    now = datetime.now(UTC)
    task = Task(id="t1", name=name, job="func:x", trigger={"type": "date"}, next_run_time=now)
    return task, Run(id="t1@now", task_id="t1", fire_time=now, attempt=attempt, lease_until=now)


def test_the_run_hook_counts_successes_failures_and_cancellations() -> None:
    metrics = TaskMetrics()
    task, run = task_and_run()
    with metrics.run_hook(task, run):
        assert metrics.get_gauge("active_tasks") == 1
    with pytest.raises(RuntimeError), metrics.run_hook(task, run):
        raise RuntimeError("oven on fire")
    with pytest.raises(asyncio.CancelledError), metrics.run_hook(task, run):
        raise asyncio.CancelledError
    assert metrics.get_counter("task_runs") == 3
    assert metrics.get_counter("task_successes") == 1
    assert metrics.get_counter("task_failures") == 1
    assert metrics.get_counter("task_cancellations") == 1
    assert metrics.get_gauge("active_tasks") == 0
    assert metrics.get_summary("task_duration").count == 3
    assert metrics.get_gauge("avg_task_duration") == metrics.get_average("task_duration")


def test_counters_only_go_up_and_observations_summarise() -> None:
    metrics = TaskMetrics()
    with pytest.raises(ValueError, match="only goes up"):
        metrics.increment("orders_processed", -1)
    for value in (3.0, 1.0, 2.0):
        metrics.observe("prep_time", value)
    summary = metrics.get_summary("prep_time")
    assert (summary.count, summary.total, summary.minimum, summary.maximum) == (3, 6.0, 1.0, 3.0)
    assert metrics.get_average("prep_time") == 2.0
    assert metrics.snapshot()["prep_time_avg"] == 2.0
    metrics.reset()
    assert metrics.snapshot() == {}


def test_a_base_collector_exports_every_counter_and_gauge() -> None:
    collector = MetricsCollector()
    collector.metrics.increment("orders processed")
    collector.metrics.set_gauge("queue_size", 2)
    assert collector.prometheus_text("pizza_") == "pizza_orders_processed 1\npizza_queue_size 2"


def test_trace_context_is_captured_only_inside_a_span() -> None:
    assert capture_trace_context() is None
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("place order") as span:
        carrier = capture_trace_context()
    assert carrier is not None
    trace_id = format(span.get_span_context().trace_id, "032x")
    assert carrier["traceparent"].split("-")[1] == trace_id
    from opentelemetry import trace

    restored = trace.get_current_span(extract_trace_context(carrier)).get_span_context()
    assert restored.span_id == span.get_span_context().span_id
    assert not trace.get_current_span(extract_trace_context(None)).get_span_context().is_valid


def test_without_opentelemetry_instrumenting_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backbeat.observability.tracing, "_HAS_OTEL", False)
    assert capture_trace_context() is None
    with pytest.raises(ConfigurationError, match=r"pip install 'backbeat\[otel\]'"):
        instrument_scheduler(object())


def test_prometheus_hook_counts_into_its_own_registry() -> None:
    prom = PrometheusMetrics(task_metrics=TaskMetrics())
    task, run = task_and_run("bake")
    with prom(task, run):
        pass
    with pytest.raises(KeyError), prom(task, run):
        raise KeyError("dough")
    text = prom.exposition().decode()
    assert 'backbeat_runs_total{outcome="success",task="bake"} 1.0' in text
    assert 'backbeat_runs_total{outcome="failure",task="bake"} 1.0' in text
    assert 'backbeat_run_duration_seconds_count{outcome="failure",task="bake"} 1.0' in text
    assert 'backbeat_run_lateness_seconds_count{task="bake"} 2.0' in text
    assert 'backbeat_active_runs{task="bake"} 0.0' in text


def test_prometheus_counts_fire_times_that_did_not_run_and_stamps_the_last_success() -> None:
    noon = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    prom = PrometheusMetrics(clock=lambda: noon)
    for kind in (
        EventKind.RUN_MISSED,
        EventKind.RUN_MISSED,
        EventKind.RUN_COALESCED,
        EventKind.MAX_INSTANCES,
        EventKind.RUN_SKIPPED,
    ):
        prom.on_event(SchedulerEvent(kind=kind, task_name="bake"))
    prom.on_event(SchedulerEvent(kind=EventKind.RUN_EXECUTED, task_name="bake"))  # not a fire time
    task, run = task_and_run("bake")
    with pytest.raises(KeyError), prom(task, run):
        raise KeyError("dough")
    assert "backbeat_task_last_success_timestamp{" not in prom.exposition().decode()  # a failure
    with prom(task, run):
        pass

    text = prom.exposition().decode()
    assert 'backbeat_missed_fire_times_total{task="bake"} 2.0' in text
    assert 'backbeat_coalesced_fire_times_total{task="bake"} 1.0' in text
    assert 'backbeat_skipped_fire_times_total{task="bake"} 2.0' in text  # max_instances and overlap
    [stamp] = [line for line in text.splitlines() if line.startswith("backbeat_task_last_success_timestamp{")]
    assert stamp.startswith('backbeat_task_last_success_timestamp{task="bake"} ')
    assert float(stamp.split()[-1]) == noon.timestamp()


def test_prometheus_drops_the_last_success_of_a_name_its_tasks_left_by_removal_or_rename() -> None:
    prom = PrometheusMetrics()
    now = datetime.now(UTC)

    def succeed(task_id: str, name: str) -> None:
        task = Task(
            id=task_id, name=name, job="m:f", trigger={"type": "interval", "seconds": 60}, next_run_time=now
        )
        with prom(task, Run(id=f"{task_id}@now", task_id=task_id, fire_time=now, lease_until=now)):
            pass

    def stamped() -> set[str]:
        prefix = 'backbeat_task_last_success_timestamp{task="'
        lines = prom.exposition().decode().splitlines()
        return {line[len(prefix) :].split('"')[0] for line in lines if line.startswith(prefix)}

    succeed("a", "bake")
    succeed("b", "slice")
    succeed("a", "knead")  # renamed: "bake" has no task left
    assert stamped() == {"knead", "slice"}
    prom.on_event(SchedulerEvent(kind=EventKind.TASK_REMOVED, task_id="b"))
    assert stamped() == {"knead"}


def test_a_listener_of_some_kinds_does_not_make_every_run_build_its_events() -> None:
    hub = EventHub()
    assert not hub.wants(EventKind.RUN_EXECUTED)
    hub.add_listener(lambda _: None, [EventKind.RUN_MISSED, EventKind.MAX_INSTANCES])  # the metrics' kinds
    assert hub.wants(EventKind.RUN_MISSED) and not hub.wants(EventKind.RUN_EXECUTED)
    undo = hub.add_listener(lambda _: None)
    assert hub.wants(EventKind.RUN_EXECUTED)
    undo()
    assert not hub.wants(EventKind.RUN_SUBMITTED)
