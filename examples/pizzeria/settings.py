"""The pizzeria's settings, read from the environment so that both processes agree on them.

Every duration of the business (a delivery in 45 minutes, a reminder after 15) is counted in
*business minutes* of ``PIZZERIA_MINUTE`` seconds: 60 for real, a fraction of a second in tests.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from backbeat import RedisJobStoreConfig, SchedulerConfig

DEFAULT_STORE = "sqlite:///pizzeria.db"


def _env(name: str, default: str) -> str:
    return os.environ.get(name) or default


@dataclass(frozen=True, slots=True, kw_only=True)
class PizzeriaSettings:
    """Where the store and the outside world's record are, and how fast time goes."""

    store: str = field(default_factory=lambda: _env("PIZZERIA_STORE", DEFAULT_STORE))
    """A backbeat store URL: ``sqlite:///pizzeria.db`` (default) or ``redis://host:6379/0``."""
    redis_prefix: str = field(default_factory=lambda: _env("PIZZERIA_REDIS_PREFIX", "mario_pizzeria"))
    """Key prefix of everything the Redis store writes (ignored by SQLite)."""
    record: Path = field(default_factory=lambda: Path(_env("PIZZERIA_RECORD", "pizzeria-record.jsonl")))
    """The JSON-lines file where the stand-ins of the outside world note what they were asked."""
    minute: float = field(default_factory=lambda: float(_env("PIZZERIA_MINUTE", "60")))
    """Seconds in a business minute."""
    retry_delay: float = field(default_factory=lambda: float(_env("PIZZERIA_RETRY_DELAY", "1")))
    """Seconds before the first retry of a failed payment (then doubled each attempt)."""
    breaker_recovery: float = field(default_factory=lambda: float(_env("PIZZERIA_BREAKER_RECOVERY", "60")))
    """Seconds the payment gateway's circuit stays open before a probe is let through."""
    inventory_cron: str = field(default_factory=lambda: _env("PIZZERIA_INVENTORY_CRON", "0 8 * * *"))
    sales_report_cron: str = field(default_factory=lambda: _env("PIZZERIA_SALES_REPORT_CRON", "0 23 * * *"))
    monitoring_cron: str = field(default_factory=lambda: _env("PIZZERIA_MONITORING_CRON", "0 * * * *"))

    def minutes(self, count: float) -> timedelta:
        """``count`` business minutes as a duration."""
        return timedelta(seconds=count * self.minute)

    def store_spec(self) -> str | RedisJobStoreConfig:
        """The store both processes open: a URL, or a Redis config carrying the key prefix."""
        if self.store.startswith(("redis://", "rediss://")):
            return RedisJobStoreConfig(host=self.store, lock_prefix=self.redis_prefix)
        return self.store

    def scheduler_args(self, *, producer_only: bool) -> dict[str, Any]:
        """Arguments of ``BackgroundTaskScheduler`` for the web process or the worker."""
        config = SchedulerConfig(
            poll_interval=min(1.0, max(0.2, self.minute / 2)),
            lease_seconds=5.0,
            shutdown_timeout=10.0,
            producer_only=producer_only,
        )
        return {"store": self.store_spec(), "config": config}

    def environment(self) -> dict[str, str]:
        """These settings as the environment variables that give them to a child process."""
        return {
            "PIZZERIA_STORE": self.store,
            "PIZZERIA_REDIS_PREFIX": self.redis_prefix,
            "PIZZERIA_RECORD": str(self.record),
            "PIZZERIA_MINUTE": repr(self.minute),
            "PIZZERIA_RETRY_DELAY": repr(self.retry_delay),
            "PIZZERIA_BREAKER_RECOVERY": repr(self.breaker_recovery),
            "PIZZERIA_INVENTORY_CRON": self.inventory_cron,
            "PIZZERIA_SALES_REPORT_CRON": self.sales_report_cron,
            "PIZZERIA_MONITORING_CRON": self.monitoring_cron,
        }
