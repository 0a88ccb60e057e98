"""Schedule-level metrics after real runs on a SQLite file: fire times missed, coalesced and
skipped (overlap refused) and the last success per task name, read from the Prometheus endpoint,
the OpenTelemetry in-memory reader and the seed's ``TaskMetrics``."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from backbeat import PrometheusMetrics, TaskMetrics, instrument_scheduler, metrics_app
from tests.integration import jobs
from tests.integration.test_observability import Telemetry, telemetry
from tests.scheduling import SchedulerFactory, wait_for

pytestmark = pytest.mark.sqlite

__all__ = ["telemetry"]  # the fixture, used by name


async def test_fire_times_that_did_not_run_and_the_last_success_are_measured_per_task_name(
    make_scheduler: SchedulerFactory, sqlite_url: str, record_file: Path, telemetry: Telemetry
) -> None:
    start = datetime.now(UTC) - timedelta(seconds=3605)  # 7 fire times due, the last 5 s ago
    producer = make_scheduler(sqlite_url, role="producer", clock=lambda: start)
    every: dict[str, Any] = {
        "trigger": "interval",
        "minutes": 10,
        "start_date": start,
        "args": [str(record_file)],
    }
    await producer.add_task(  # 1,500 s: 3 inside (2 coalesced into the last), 4 missed
        jobs.note, name="report", options={"catchup_window": timedelta(minutes=25)}, **every
    )
    await producer.add_task(  # all 7 inside; max_instances=1 refuses 6 of them
        jobs.note, name="sync", options={"catchup_window": None, "coalesce": False}, **every
    )

    worker = make_scheduler(sqlite_url)
    instrument_scheduler(worker, telemetry.meter_provider, telemetry.tracer_provider)
    prom = PrometheusMetrics().attach(worker)
    seed = TaskMetrics().attach(worker)
    before = time.time()
    await worker.start_async()
    await wait_for(lambda: len(jobs.read_records(record_file)) == 2)
    success = 'backbeat_runs_total{outcome="success",task="sync"} 1.0'
    await wait_for(lambda: success in prom.exposition().decode())
    after = time.time()

    app = Starlette(routes=[Mount("/metrics", app=metrics_app(prom))])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://web") as client:
        text = (await client.get("/metrics/")).text
    for line in (
        'backbeat_missed_fire_times_total{task="report"} 4.0',
        'backbeat_coalesced_fire_times_total{task="report"} 2.0',
        'backbeat_skipped_fire_times_total{task="sync"} 6.0',
        'backbeat_runs_total{outcome="success",task="report"} 1.0',
    ):
        assert line in text
    assert 'backbeat_missed_fire_times_total{task="sync"}' not in text
    stamps = dict(re.findall(r'backbeat_task_last_success_timestamp\{task="(\w+)"\} (\S+)', text))
    assert stamps.keys() == {"report", "sync"}
    assert all(before <= float(value) <= after for value in stamps.values())

    assert telemetry.point("backbeat.fire_time.missed", task_name="report").value == 4
    assert telemetry.point("backbeat.fire_time.coalesced", task_name="report").value == 2
    assert telemetry.point("backbeat.fire_time.skipped", task_name="sync").value == 6
    assert telemetry.matching("backbeat.fire_time.skipped", task_name="report") == []
    last = {
        p.attributes["backbeat.task.name"]: p.value for p in telemetry.points("backbeat.task.last_success")
    }
    assert last.keys() == {"report", "sync"}
    assert all(before <= value <= after for value in last.values())

    counted = seed.snapshot()
    assert [counted[f"{kind}_fire_times"] for kind in ("missed", "coalesced", "skipped")] == [4, 2, 6]


async def test_removing_the_last_task_of_a_name_here_drops_its_last_success(
    make_scheduler: SchedulerFactory, sqlite_url: str, record_file: Path, telemetry: Telemetry
) -> None:
    worker = make_scheduler(sqlite_url)
    instrument_scheduler(worker, telemetry.meter_provider, telemetry.tracer_provider)
    prom = PrometheusMetrics().attach(worker)
    await worker.start_async()
    every: dict[str, Any] = {
        "trigger": "interval",
        "hours": 1,
        "start_date": datetime.now(UTC) + timedelta(seconds=0.5),  # one run each, within the test
        "args": [str(record_file)],
    }
    first = await worker.add_task(jobs.note, name="report", **every)
    second = await worker.add_task(jobs.note, name="report", **every)
    other = await worker.add_task(jobs.note, name="sync", **every)
    await wait_for(lambda: len(jobs.read_records(record_file)) == 3)
    await wait_for(
        lambda: 'backbeat_runs_total{outcome="success",task="report"} 2.0' in prom.exposition().decode()
    )
    await wait_for(
        lambda: 'backbeat_runs_total{outcome="success",task="sync"} 1.0' in prom.exposition().decode()
    )

    def exported() -> tuple[set[str], set[str]]:
        text = prom.exposition().decode()
        stamps = set(re.findall(r'backbeat_task_last_success_timestamp\{task="(\w+)"\}', text))
        points = telemetry.points("backbeat.task.last_success")
        return stamps, {p.attributes["backbeat.task.name"] for p in points}

    assert exported() == ({"report", "sync"}, {"report", "sync"})
    assert await worker.remove_task(first)
    assert exported() == ({"report", "sync"}, {"report", "sync"})  # the second task has that name
    assert await worker.remove_task(other)
    assert exported() == ({"report"}, {"report"})
    assert await worker.remove_task(second)
    assert exported() == (set(), set())
    assert 'backbeat_runs_total{outcome="success",task="report"} 2.0' in prom.exposition().decode()


async def test_a_task_removed_while_its_run_goes_on_leaves_no_last_success_behind(
    make_scheduler: SchedulerFactory, sqlite_url: str, record_file: Path
) -> None:
    worker = make_scheduler(sqlite_url)
    prom = PrometheusMetrics().attach(worker)
    await worker.start_async()
    task_id = await worker.add_task(
        jobs.slow,
        name="report",
        trigger="interval",
        hours=1,
        start_date=datetime.now(UTC) + timedelta(seconds=0.2),
        args=[str(record_file), 1.0],
    )
    await wait_for(lambda: [r["event"] for r in jobs.read_records(record_file)] == ["start"])
    assert await worker.remove_task(task_id)  # its running run finishes (README: overlap)
    success = 'backbeat_runs_total{outcome="success",task="report"} 1.0'
    await wait_for(lambda: success in prom.exposition().decode())
    assert 'backbeat_task_last_success_timestamp{task="report"}' not in prom.exposition().decode()
