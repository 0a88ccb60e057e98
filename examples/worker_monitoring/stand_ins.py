"""Stand-ins for the outside world of seed 000: the worker repository (a JSON file instead of
a database) and the cloud client (instead of AWS EC2 and CloudWatch).

They are NOT part of backbeat. The cloud client invents metrics and appends every call, with
the process id and the backbeat run that made it, to a JSON-lines record.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from backbeat import SchedulerNotRunningError, current_run


class CMLWorkerStatus(StrEnum):
    """A worker's lifecycle state."""

    RUNNING = "running"
    TERMINATED = "terminated"


@dataclass(frozen=True, slots=True)
class CMLWorker:
    """A cloud worker the service monitors."""

    id: str
    status: CMLWorkerStatus


class WorkerRepository:
    """Stand-in for the workers' database: a JSON file ``{worker_id: status}`` any process can read."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _load(self) -> dict[str, str]:
        return json.loads(self.path.read_text()) if self.path.exists() else {}

    def _save(self, workers: dict[str, str]) -> None:
        temporary = self.path.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_text(json.dumps(workers, indent=2))
        temporary.replace(self.path)  # atomic: a reader sees the old file or the new one

    async def get_by_id_async(self, worker_id: str) -> CMLWorker | None:
        """The worker, or ``None``."""
        status = self._load().get(worker_id)
        return None if status is None else CMLWorker(worker_id, CMLWorkerStatus(status))

    async def get_active_async(self) -> list[CMLWorker]:
        """The workers not terminated."""
        return [
            CMLWorker(worker_id, CMLWorkerStatus(status))
            for worker_id, status in self._load().items()
            if status != CMLWorkerStatus.TERMINATED
        ]

    async def add_async(self, worker_id: str) -> CMLWorker:
        """Register a running worker."""
        return await self._set(worker_id, CMLWorkerStatus.RUNNING)

    async def terminate_async(self, worker_id: str) -> CMLWorker:
        """Mark a worker terminated (its monitoring job stops itself at its next run)."""
        return await self._set(worker_id, CMLWorkerStatus.TERMINATED)

    async def _set(self, worker_id: str, status: CMLWorkerStatus) -> CMLWorker:
        workers = self._load()
        workers[worker_id] = status.value
        self._save(workers)
        return CMLWorker(worker_id, status)


class CloudClient:
    """Stand-in for the EC2/CloudWatch clients: invents metrics and records every call."""

    def __init__(self, record: Path) -> None:
        self.record = record

    async def get_instance_status(self, worker_id: str) -> str:
        """EC2's instance state."""
        return "running"

    async def get_metrics(self, worker_id: str) -> dict[str, float]:
        """CloudWatch metrics of the worker's instance (made up), recorded with the run."""
        metrics = {"cpu_percent": float(sum(map(ord, worker_id)) % 100), "memory_percent": 42.0}
        self.note("metrics", worker_id=worker_id, metrics=metrics)
        return metrics

    def note(self, what: str, **details: Any) -> None:
        """Append one JSON line: what, the process, the run (if any), and ``details``."""
        entry: dict[str, Any] = {"at": time.time(), "pid": os.getpid(), "what": what, **details}
        try:
            run = current_run()
        except SchedulerNotRunningError:
            pass
        else:
            entry.update(task_id=run.task_id, run_id=run.run_id, attempt=run.attempt)
            entry["fire_time"] = run.fire_time.isoformat()
        fd = os.open(self.record, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (json.dumps(entry, default=str) + "\n").encode())
        finally:
            os.close(fd)

    def read(self) -> list[dict[str, Any]]:
        """Every record so far."""
        if not self.record.exists():
            return []
        return [json.loads(line) for line in self.record.read_text().splitlines() if line.strip()]
