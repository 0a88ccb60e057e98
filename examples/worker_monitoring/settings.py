"""The monitoring service's settings, read from the environment (so child processes agree)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backbeat import RedisJobStoreConfig, SchedulerConfig


def _env(name: str, default: str) -> str:
    return os.environ.get(name) or default


@dataclass(frozen=True, slots=True, kw_only=True)
class MonitoringSettings:
    """Store, stand-in files, and how often metrics are collected."""

    store: str = field(default_factory=lambda: _env("WORKER_MONITORING_STORE", "sqlite:///monitoring.db"))
    redis_prefix: str = field(default_factory=lambda: _env("WORKER_MONITORING_REDIS_PREFIX", "cml"))
    workers_file: Path = field(
        default_factory=lambda: Path(_env("WORKER_MONITORING_WORKERS", "monitoring-workers.json"))
    )
    """The stand-in worker repository (a JSON file; a real one is a database)."""
    record: Path = field(
        default_factory=lambda: Path(_env("WORKER_MONITORING_RECORD", "monitoring-record.jsonl"))
    )
    """What the stand-in cloud client was asked, one JSON object per line."""
    interval: float = field(default_factory=lambda: float(_env("WORKER_MONITORING_INTERVAL", "300")))
    """Seconds between two metrics collections of a worker (seed 000: 5 minutes)."""
    lease: float = field(default_factory=lambda: float(_env("WORKER_MONITORING_LEASE", "10")))
    """Seconds before a run of a killed process is taken over."""

    def store_spec(self) -> str | RedisJobStoreConfig:
        """A store URL, or a Redis config carrying the key prefix."""
        if self.store.startswith(("redis://", "rediss://")):
            return RedisJobStoreConfig(host=self.store, lock_prefix=self.redis_prefix)
        return self.store

    def scheduler_args(self, *, producer_only: bool) -> dict[str, Any]:
        """``BackgroundTaskScheduler.configure`` arguments.

        A collection missed while no process ran is made once when one is back (``coalesce``,
        no misfire limit), on the schedule the task already had.
        """
        config = SchedulerConfig(
            poll_interval=min(1.0, self.interval / 4),
            lease_seconds=self.lease,
            shutdown_timeout=10.0,
            producer_only=producer_only,
            job_defaults={"coalesce": True, "misfire_grace_time": None},
        )
        return {"store": self.store_spec(), "config": config}

    def environment(self) -> dict[str, str]:
        """These settings as environment variables for a child process."""
        return {
            "WORKER_MONITORING_STORE": self.store,
            "WORKER_MONITORING_REDIS_PREFIX": self.redis_prefix,
            "WORKER_MONITORING_WORKERS": str(self.workers_file),
            "WORKER_MONITORING_RECORD": str(self.record),
            "WORKER_MONITORING_INTERVAL": repr(self.interval),
            "WORKER_MONITORING_LEASE": repr(self.lease),
        }
