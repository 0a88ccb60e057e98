"""The worker-monitoring example end to end: the service as a real process on a SQLite file,
two workers monitored every second, one terminated, the service killed (``kill -9``) and
restarted. The remaining job goes on from the store on the schedule it had: it is not re-added
and its next run time is not reset (the seed's system re-adds jobs at startup and so delays them).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from examples.worker_monitoring.cli import add_workers, monitoring_status, terminate_workers
from examples.worker_monitoring.demo import ServiceProcess
from examples.worker_monitoring.monitoring import monitoring_task_id
from examples.worker_monitoring.settings import MonitoringSettings
from examples.worker_monitoring.stand_ins import CloudClient

from tests.scheduling import eventually, wait_for

pytestmark = pytest.mark.slow

INTERVAL = 1.0


async def stored(settings: MonitoringSettings) -> dict[str, dict[str, Any]]:
    """The monitoring tasks in the store, by worker id."""
    return {t["worker_id"]: t for t in await monitoring_status(settings)}


def when(value: str) -> datetime:
    return datetime.fromisoformat(value)


def on_grid(moment: datetime, origin: datetime) -> bool:
    """Whether ``moment`` is a whole number of intervals after ``origin`` (to the millisecond)."""
    return abs(((moment - origin).total_seconds() + 0.001) % INTERVAL) < 0.002


async def test_monitoring_survives_kill_9_without_resetting_schedules(tmp_path: Path) -> None:
    settings = MonitoringSettings(
        store=f"sqlite:///{tmp_path / 'monitoring.db'}",
        workers_file=tmp_path / "workers.json",
        record=tmp_path / "record.jsonl",
        interval=INTERVAL,
        lease=2.0,
    )
    cloud = CloudClient(settings.record)
    log = tmp_path / "service.log"

    def metrics(worker_id: str, pid: int | None = None) -> list[dict[str, Any]]:
        return [
            r
            for r in cloud.read()
            if r["what"] == "metrics" and r["worker_id"] == worker_id and pid in (None, r["pid"])
        ]

    service = ServiceProcess(settings, log=log)
    try:
        # Monitoring starts from another process (a producer-only scheduler): the service runs it.
        assert await add_workers(settings, ["worker-1", "worker-2"]) == [
            monitoring_task_id("worker-1"),
            monitoring_task_id("worker-2"),
        ]
        await wait_for(lambda: len(metrics("worker-1")) >= 3 and len(metrics("worker-2")) >= 3, timeout=10)
        assert {r["pid"] for r in cloud.read() if r["what"] == "metrics"} == {service.pid}

        # worker-1 terminated: its job removes its own task at its next run, and runs no more
        await terminate_workers(settings, ["worker-1"])
        await eventually(lambda: _without(settings, "worker-1"), timeout=5)
        [stopped] = [r for r in cloud.read() if r["what"] == "monitoring_stopped"]
        assert stopped["worker_id"] == "worker-1" and stopped["pid"] == service.pid
        count = len(metrics("worker-1"))

        # kill -9: the store keeps worker-2's task exactly as it was
        service.kill()
        before = (await stored(settings))["worker-2"]
        await asyncio.sleep(INTERVAL * 1.5)  # at least one fire time passes with no process running

        service = ServiceProcess(settings, log=log)  # discovers the active workers itself
        await wait_for(lambda: len(metrics("worker-2", service.pid)) >= 2, timeout=10)
        after = (await stored(settings))["worker-2"]
    finally:
        service.stop()

    # Not re-added: at startup the existing task was kept (the catch-up run may already have
    # moved its next run one interval on), never replaced by a fresh one ...
    kept = [r for r in cloud.read() if r["what"] == "monitoring_kept" and r["pid"] == service.pid]
    assert [r["worker_id"] for r in kept] == ["worker-2"]
    assert not [r for r in cloud.read() if r["what"] == "monitoring_started" and r["pid"] == service.pid]
    # ... and its schedule was not reset: the first run after the restart is a missed fire time
    # and every time stays on the original grid (a re-added job would first run one interval
    # after the restart, off that grid).
    origin = when(metrics("worker-2")[0]["fire_time"])
    first = when(next(r for r in metrics("worker-2", service.pid) if r["attempt"] == 1)["fire_time"])
    assert first >= when(before["next_run_time"])
    for moment in (first, when(kept[0]["next_run_time"]), when(after["next_run_time"])):
        assert on_grid(moment, origin), (moment, origin)
    assert after["runs"] > before["runs"]

    # worker-1 stayed stopped; no attempt of worker-2's runs ran twice (a fire time cut by the
    # kill may run again, as attempt 2 of the same run: at-least-once)
    assert len(metrics("worker-1")) == count
    assert "worker-1" not in await stored(settings)
    attempts = Counter((r["run_id"], r["attempt"]) for r in metrics("worker-2"))
    assert max(attempts.values()) == 1
    assert "Traceback" not in log.read_text()


async def _without(settings: MonitoringSettings, worker_id: str) -> bool:
    return worker_id not in await stored(settings)
