"""Metrics and traces of real runs on a SQLite file: OpenTelemetry SDK in-memory readers and
exporters, Prometheus exposition, and a run span joining the trace that scheduled it, also when
another scheduler (or another process) runs it.

``python -m tests.integration.test_observability STORE_URL SPANS_FILE`` is the worker process of
the last test: an instrumented scheduler writing every finished span to ``SPANS_FILE`` as JSON lines.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from starlette.applications import Starlette
from starlette.routing import Mount

from backbeat import BackgroundTaskScheduler, SchedulerConfig, instrument_scheduler, metrics_app
from backbeat.observability.prometheus import PrometheusMetrics
from tests.integration import jobs
from tests.scheduling import ROOT, SchedulerFactory, wait_for

pytestmark = pytest.mark.sqlite


class OvenOnFire(RuntimeError):
    pass


async def explode(path: str) -> None:
    """A job that fails (after recording its run)."""
    jobs.record(path, "run", label="explode")
    raise OvenOnFire("oven on fire")


async def note_span(path: str) -> None:
    """A job that records the span current while it runs."""
    jobs.record(path, "run", span_id=trace.get_current_span().get_span_context().span_id)


class Telemetry:
    """SDK providers exporting to memory, not installed globally."""

    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])
        self.tracer = self.tracer_provider.get_tracer("the-web-app")

    def finished(self, prefix: str = "backbeat.run") -> list[ReadableSpan]:
        return [s for s in self.spans.get_finished_spans() if s.name.startswith(prefix)]

    def points(self, name: str) -> list[Any]:
        data = self.reader.get_metrics_data()
        found: list[Any] = []
        for resource in data.resource_metrics if data is not None else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        found.extend(metric.data.data_points)
        return found

    def matching(self, name: str, **attributes: str) -> list[Any]:
        wanted = {f"backbeat.{key.replace('_', '.')}": value for key, value in attributes.items()}
        return [p for p in self.points(name) if wanted.items() <= dict(p.attributes).items()]

    def point(self, name: str, **attributes: str) -> Any:
        matches = self.matching(name, **attributes)
        assert len(matches) == 1, (name, attributes, self.points(name))
        return matches[0]


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    made = Telemetry()
    yield made
    made.tracer_provider.shutdown()
    made.meter_provider.shutdown()


async def test_runs_are_measured_and_traced(
    make_scheduler: SchedulerFactory, sqlite_url: str, record_file: Path, telemetry: Telemetry
) -> None:
    scheduler = make_scheduler(sqlite_url)
    instrument_scheduler(scheduler, telemetry.meter_provider, telemetry.tracer_provider)
    await scheduler.start()
    path = str(record_file)
    with telemetry.tracer.start_as_current_span("POST /orders", kind=SpanKind.SERVER) as request:
        ok_id = await scheduler.schedule_immediate_task("confirm_order", jobs.slow, args=[path, 0.4])
        await scheduler.schedule_immediate_task("charge", explode, args=[path])

    def slow_job_running() -> bool:  # the gauge went up while it ran, before it came down
        return [p.value for p in telemetry.matching("backbeat.run.active", task_name="confirm_order")] == [1]

    await wait_for(slow_job_running)
    await wait_for(lambda: len(telemetry.finished()) == 2, timeout=10)

    assert telemetry.point("backbeat.run.active", task_name="confirm_order").value == 0
    assert telemetry.point("backbeat.run.active", task_name="charge").value == 0
    success = telemetry.point("backbeat.run.count", task_name="confirm_order", outcome="success")
    failure = telemetry.point("backbeat.run.count", task_name="charge", outcome="failure")
    assert success.value == failure.value == 1
    assert failure.attributes["error.type"] == f"{__name__}.OvenOnFire"
    slow_run = telemetry.point("backbeat.run.duration", task_name="confirm_order", outcome="success")
    assert slow_run.count == 1
    assert 0.4 <= slow_run.sum < 5
    assert telemetry.point("backbeat.run.duration", task_name="charge", outcome="failure").count == 1
    for name in ("confirm_order", "charge"):
        lateness = telemetry.point("backbeat.run.lateness", task_name=name)
        assert lateness.count == 1
        assert 0 <= lateness.sum < 5

    spans = {span.name: span for span in telemetry.finished()}
    ok, failed = spans["backbeat.run confirm_order"], spans["backbeat.run charge"]
    for span in (ok, failed):
        assert span.kind is SpanKind.CONSUMER
        assert span.parent is not None
        assert span.parent.span_id == request.get_span_context().span_id
        assert span.context.trace_id == request.get_span_context().trace_id
    assert ok.attributes is not None
    assert ok.attributes["backbeat.task.id"] == ok_id
    assert ok.attributes["backbeat.task.name"] == "confirm_order"
    assert str(ok.attributes["backbeat.run.id"]).startswith(f"{ok_id}@")
    assert ok.attributes["backbeat.run.attempt"] == 1
    assert ok.attributes["backbeat.outcome"] == "success"
    assert ok.status.status_code is StatusCode.UNSET
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.status.description == "OvenOnFire: oven on fire"
    assert [event.name for event in failed.events] == ["exception"]
    assert failed.events[0].attributes is not None
    assert failed.events[0].attributes["exception.message"] == "oven on fire"


async def test_the_run_span_is_current_in_the_job(
    make_scheduler: SchedulerFactory, sqlite_url: str, record_file: Path, telemetry: Telemetry
) -> None:
    scheduler = make_scheduler(sqlite_url)
    instrument_scheduler(scheduler, tracer_provider=telemetry.tracer_provider, metrics=False)
    await scheduler.start()
    await scheduler.schedule_immediate_task("traced", note_span, args=[str(record_file)])
    await wait_for(lambda: len(telemetry.finished()) == 1)
    [run_span] = telemetry.finished()
    assert jobs.read_records(record_file)[0]["span_id"] == run_span.context.span_id  # job spans: children
    assert run_span.parent is None  # scheduled outside any span: a trace of its own
    assert run_span.attributes is not None
    assert run_span.attributes["backbeat.run.fire_time"]


async def test_the_run_span_joins_the_trace_when_another_scheduler_runs_it(
    make_scheduler: SchedulerFactory, sqlite_url: str, record_file: Path, telemetry: Telemetry
) -> None:
    web = make_scheduler(sqlite_url, producer_only=True)  # not instrumented: it only schedules
    worker = make_scheduler(sqlite_url)
    instrument_scheduler(worker, telemetry.meter_provider, telemetry.tracer_provider)
    await web.start()
    await worker.start()
    with telemetry.tracer.start_as_current_span("POST /orders", kind=SpanKind.SERVER) as request:
        await web.schedule_delayed_task(
            "kitchen_reminder", jobs.note, delay_seconds=0.3, args=[str(record_file), "kitchen"]
        )
    await wait_for(lambda: len(telemetry.finished()) == 1)
    [span] = telemetry.finished()
    assert jobs.read_records(record_file)[0]["owner"] == worker.engine_config.owner
    assert span.parent is not None
    assert span.parent.span_id == request.get_span_context().span_id
    assert span.context.trace_id == request.get_span_context().trace_id


async def test_runs_of_a_recurring_task_start_traces_linked_to_the_scheduling_span(
    make_scheduler: SchedulerFactory, sqlite_url: str, record_file: Path, telemetry: Telemetry
) -> None:
    scheduler = make_scheduler(sqlite_url)
    instrument_scheduler(scheduler, telemetry.meter_provider, telemetry.tracer_provider)
    with telemetry.tracer.start_as_current_span("app startup") as startup:
        await scheduler.start()  # the engine's tasks inherit this span: runs must not
        with telemetry.tracer.start_as_current_span("POST /workers") as request:
            await scheduler.add_task(jobs.note, "interval", seconds=0.3, args=[str(record_file)], id="poll")
    await wait_for(lambda: len(telemetry.finished()) >= 2)
    first, second = telemetry.finished()[:2]
    for span in (first, second):
        assert span.parent is None
        assert span.context.trace_id not in (
            request.get_span_context().trace_id,
            startup.get_span_context().trace_id,
        )
        assert [link.context.span_id for link in span.links] == [request.get_span_context().span_id]
    assert first.context.trace_id != second.context.trace_id


async def test_prometheus_exposition_and_endpoint(
    make_scheduler: SchedulerFactory, sqlite_url: str, record_file: Path
) -> None:
    scheduler = make_scheduler(sqlite_url)
    prom = PrometheusMetrics().attach(scheduler)
    await scheduler.start()
    await scheduler.schedule_immediate_task("confirm_order", jobs.note, args=[str(record_file)])
    await scheduler.schedule_immediate_task("charge", explode, args=[str(record_file)])
    success = 'backbeat_runs_total{outcome="success",task="confirm_order"} 1.0'
    failure = 'backbeat_runs_total{outcome="failure",task="charge"} 1.0'
    await wait_for(lambda: failure in prom.exposition().decode() and success in prom.exposition().decode())

    app = Starlette(routes=[Mount("/metrics", app=metrics_app(prom))])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://web") as client:
        response = await client.get("/metrics/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    for line in (
        success,
        failure,
        'backbeat_run_duration_seconds_count{outcome="success",task="confirm_order"} 1.0',
        'backbeat_run_lateness_seconds_count{task="charge"} 1.0',
        'backbeat_active_runs{task="charge"} 0.0',
    ):
        assert line in response.text


async def test_a_backlog_shows_as_a_growing_due_lag(
    make_scheduler: SchedulerFactory, sqlite_url: str, record_file: Path, telemetry: Telemetry
) -> None:
    config = SchedulerConfig(lease_seconds=0.6, poll_interval=0.1, max_concurrency=1)
    scheduler = make_scheduler(sqlite_url, config=config)
    instrument_scheduler(scheduler, telemetry.meter_provider, telemetry.tracer_provider)
    prom = PrometheusMetrics().attach(scheduler)
    await scheduler.start()
    for n in range(3):  # one runs at a time: the others wait, due, unclaimed
        await scheduler.schedule_immediate_task(f"slow-{n}", jobs.slow, args=[str(record_file), 1.0])
    await wait_for(lambda: scheduler.due_lag() > 0.4, timeout=5)
    [point] = telemetry.points("backbeat.due.lag")
    assert point.value > 0.4
    assert "backbeat_due_lag_seconds" in prom.exposition().decode()
    await wait_for(
        lambda: len([r for r in jobs.read_records(record_file) if r["event"] == "end"]) == 3, timeout=10
    )
    await wait_for(lambda: scheduler.due_lag() == 0.0, timeout=5)


async def test_the_seed_collector_is_fed_by_runs(
    make_scheduler: SchedulerFactory, sqlite_url: str, record_file: Path
) -> None:
    from tests.unit.test_metrics import PizzaOrderMetrics

    collector = PizzaOrderMetrics()  # type: ignore[no-untyped-call]
    scheduler = make_scheduler(sqlite_url)
    collector.attach(scheduler)
    await scheduler.start()
    await scheduler.schedule_immediate_task("charge", explode, args=[str(record_file)])
    await wait_for(lambda: collector.metrics.get_counter("task_failures") == 1)
    text = await collector.export_metrics_to_prometheus()  # type: ignore[no-untyped-call]
    assert "mario_pizzeria_failed_tasks_count 1" in text
    assert "mario_pizzeria_active_tasks 0" in text


def start_span_worker(url: str, spans_file: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.integration.test_observability", url, str(spans_file)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
async def test_the_run_span_joins_the_trace_in_a_worker_process(
    make_scheduler: SchedulerFactory, sqlite_url: str, record_file: Path, tmp_path: Path, telemetry: Telemetry
) -> None:
    spans_file = tmp_path / "spans.jsonl"
    process = start_span_worker(sqlite_url, spans_file)
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready"
        web = make_scheduler(sqlite_url, producer_only=True)
        await web.start()
        with telemetry.tracer.start_as_current_span("POST /orders") as request:
            await web.schedule_immediate_task("dispatch", explode, args=[str(record_file)])

        def exported() -> list[dict[str, Any]]:
            text = spans_file.read_text() if spans_file.exists() else ""
            return [json.loads(line) for line in text.splitlines() if line.strip()]

        await wait_for(lambda: len(exported()) == 1, timeout=15)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(20)
        if process.stdout is not None:
            process.stdout.close()
    [span] = exported()
    context = request.get_span_context()
    assert span["name"] == "backbeat.run dispatch"
    assert span["context"]["trace_id"] == f"0x{context.trace_id:032x}"
    assert span["parent_id"] == f"0x{context.span_id:016x}"
    assert span["status"]["status_code"] == "ERROR"
    assert jobs.read_records(record_file)[0]["pid"] == process.pid


async def _worker_main(url: str, out: TextIO) -> None:
    provider = TracerProvider()
    exporter = ConsoleSpanExporter(out=out, formatter=lambda span: span.to_json(indent=None) + "\n")
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    config = SchedulerConfig(lease_seconds=2.0, poll_interval=0.2, shutdown_timeout=5.0)
    scheduler = BackgroundTaskScheduler(store=url, config=config)
    instrument_scheduler(scheduler, tracer_provider=provider, metrics=False)
    await scheduler.start_async()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print("ready", flush=True)
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 60)
    finally:
        await scheduler.stop_async()
        provider.shutdown()


if __name__ == "__main__":
    with open(sys.argv[2], "a") as spans_out:
        asyncio.run(_worker_main(sys.argv[1], spans_out))
