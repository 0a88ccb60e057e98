"""The scripted demo: two workers monitored, one terminated, the service killed (``kill -9``)
and restarted; the remaining job goes on from the store on its schedule, not reset.

``python -m examples.worker_monitoring demo`` (``--store redis://127.0.0.1:6379/0`` for Redis).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from backbeat import BackgroundTaskScheduler
from examples.worker_monitoring.app import build_application
from examples.worker_monitoring.cli import monitoring_status, terminate_workers
from examples.worker_monitoring.settings import MonitoringSettings
from examples.worker_monitoring.stand_ins import CloudClient

ROOT = Path(__file__).resolve().parents[2]
STARTED = time.monotonic()


class ServiceProcess:
    """``python -m examples.worker_monitoring run`` as a child process, started when ready."""

    def __init__(self, settings: MonitoringSettings, workers: Sequence[str] = (), log: Path | None = None):
        env = {
            **os.environ,
            **settings.environment(),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        }
        with open(log or os.devnull, "a") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "examples.worker_monitoring", "run", *workers],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
            )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if "ready" not in line:
            self.kill()
            raise RuntimeError(f"the monitoring service did not start: {line!r}")

    @property
    def pid(self) -> int:
        return self.process.pid

    def kill(self) -> None:
        """``kill -9``: no shutdown, no lease released."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)
        self._close_output()

    def stop(self) -> int:
        """SIGTERM: a graceful shutdown."""
        if self.process.poll() is None:
            self.process.terminate()
        code = self.process.wait(20)
        self._close_output()
        return code

    def _close_output(self) -> None:
        """Close our end of the ended process's output pipe (only its "ready" line is read)."""
        if self.process.stdout is not None:
            self.process.stdout.close()


def wait_until(predicate: Callable[[], Any], timeout: float = 20.0) -> Any:
    """Poll ``predicate`` until it returns something truthy (and return it)."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting after {timeout}s")
        time.sleep(0.1)
    return value


def say(message: str) -> None:
    print(f"[{time.monotonic() - STARTED:5.1f}s] {message}", flush=True)


def status_of(settings: MonitoringSettings, worker_id: str) -> dict[str, Any] | None:
    """The stored monitoring task of ``worker_id`` (read by a producer-only scheduler)."""
    tasks = asyncio.run(monitoring_status(settings))
    return next((t for t in tasks if t["worker_id"] == worker_id), None)


def demo(store: str | None = None, prefix: str | None = None) -> None:
    """Run the story in a temporary directory (and a fresh Redis key prefix)."""
    with tempfile.TemporaryDirectory(prefix="worker-monitoring-") as tmp:
        settings = MonitoringSettings(
            store=store or f"sqlite:///{tmp}/monitoring.db",
            redis_prefix=prefix or f"cml-demo-{uuid.uuid4().hex[:8]}",
            workers_file=Path(tmp) / "workers.json",
            record=Path(tmp) / "record.jsonl",
            interval=2.0,
            lease=2.0,
        )
        try:
            _story(settings, CloudClient(settings.record))
        finally:
            asyncio.run(_clear(settings))


def _story(settings: MonitoringSettings, cloud: CloudClient) -> None:
    def metrics(worker_id: str, pid: int | None = None) -> list[dict[str, Any]]:
        return [
            r
            for r in cloud.read()
            if r["what"] == "metrics" and r["worker_id"] == worker_id and pid in (None, r["pid"])
        ]

    say(f"starting the service on {settings.store}: worker-1 and worker-2, every {settings.interval:g} s")
    service = ServiceProcess(settings, ["worker-1", "worker-2"])
    wait_until(lambda: len(metrics("worker-1")) >= 2 and len(metrics("worker-2")) >= 2)
    say(f"metrics collected by pid {service.pid}: worker-1 x{len(metrics('worker-1'))}, worker-2 x2+")

    asyncio.run(terminate_workers(settings, ["worker-1"]))
    say("worker-1 terminated (in the repository)")
    wait_until(lambda: status_of(settings, "worker-1") is None)
    say("worker-1's job saw it at its next run and removed its own task")

    service.kill()
    before = status_of(settings, "worker-2")
    assert before is not None
    say(f"kill -9 {service.pid}; stored: worker-2 next run {before['next_run_time']}, runs {before['runs']}")
    time.sleep(settings.interval * 1.5)

    service = ServiceProcess(settings)
    say(f"restarted as pid {service.pid} (no workers named: it discovers the active ones)")
    first = wait_until(lambda: metrics("worker-2", service.pid))[0]
    kept = [r for r in cloud.read() if r["what"] == "monitoring_kept" and r["pid"] == service.pid]
    say(f"at startup the stored job was kept, not re-added (next run {kept[0]['next_run_time']})")
    origin = datetime.fromisoformat(metrics("worker-2")[0]["fire_time"])
    offset = (datetime.fromisoformat(first["fire_time"]) - origin).total_seconds() % settings.interval
    say(
        f"first collection after the restart: fire time {first['fire_time']} "
        f"(on the original {settings.interval:g} s grid: offset {offset:.3f} s), one catch-up run"
    )
    wait_until(lambda: len(metrics("worker-2", service.pid)) >= 2)
    after = status_of(settings, "worker-2")
    assert after is not None
    say(f"worker-2 goes on: runs {before['runs']} -> {after['runs']}; worker-1 stays stopped")
    service.stop()
    say("service stopped gracefully; demo over")


async def _clear(settings: MonitoringSettings) -> None:
    application = build_application(settings, producer_only=True)
    await application.services.get_required_service(BackgroundTaskScheduler).clear_all_jobs()
