"""The names users import stay where they were when the package was cut into layers."""

from __future__ import annotations

import importlib

import pytest

import backbeat

# backbeat.__all__ as it was before the layers: every name must still be importable from `backbeat`.
PUBLIC_NAMES = (
    "ApplicationSettings", "AsyncIOExecutor", "BackbeatError", "BackgroundJob", "BackgroundTaskScheduler",
    "BackgroundTaskSchedulerOptions", "BackgroundTasksBus", "CircuitBreakerPolicy", "CircuitOpenError",
    "ConfigurationError", "CorruptRecordError", "CustomTaskExecutor", "DeadLetter", "DecodingError",
    "EncodingError", "EventKind", "Executor", "HostedService", "InvalidTriggerError", "MetricsCollector",
    "MongoJobStoreConfig", "NotPersistableError", "PostgresJobStoreConfig", "ProcessPoolExecutor",
    "PrometheusMetrics", "RecurrentBackgroundJob", "RecurrentTaskDescriptor", "RedisJobStoreConfig",
    "RetryPolicy", "RunContext", "SQLiteJobStoreConfig", "ScheduleRequest", "ScheduledBackgroundJob",
    "ScheduledTaskDescriptor", "SchedulerConfig", "SchedulerEvent", "SchedulerNotRunningError",
    "ServiceCollection", "ServiceLifetime", "ServiceProvider", "ServiceProviderBase", "ServiceScope", "Store",
    "StoreError", "StoreUnavailableError", "TaskDescriptor", "TaskExecutionResult", "TaskExistsError",
    "TaskFailureHandler", "TaskInfo", "TaskMetrics", "TaskNotFoundError", "ThreadPoolExecutor",
    "UnknownJobError", "WebApplication", "WebApplicationBuilder", "backgroundjob", "circuit_breaker",
    "current_run", "deserialize_task", "get_service", "hosted_lifespan", "instrument_scheduler",
    "metrics_app", "retry_policy", "schedule_task",
)  # fmt: skip

# Other import paths the README and the examples use.
MODULE_NAMES = (
    ("backbeat.web", "create_app"),
    ("backbeat.web", "TaskSummary"),
    ("backbeat.web", "HistoryEntry"),
    ("backbeat.prometheus", "PrometheusMetrics"),
    ("backbeat.prometheus", "metrics_app"),
    ("backbeat.cli.app", "app"),
    ("backbeat.stores", "store_from_url"),
    ("backbeat.stores.sqlite", "SQLiteStore"),
    ("backbeat.stores.redis", "RedisStore"),
    ("backbeat.stores.postgresql", "PostgreSQLStore"),
)


@pytest.mark.parametrize("name", PUBLIC_NAMES)
def test_every_public_name_of_before_the_layers_is_importable_from_backbeat(name: str) -> None:
    assert name in backbeat.__all__
    assert getattr(backbeat, name) is not None


def test_all_names_no_name_twice_and_nothing_missing() -> None:
    assert len(set(backbeat.__all__)) == len(backbeat.__all__)
    assert all(hasattr(backbeat, name) for name in backbeat.__all__)


@pytest.mark.parametrize(("module", "name"), MODULE_NAMES)
def test_documented_module_paths_still_import(module: str, name: str) -> None:
    assert hasattr(importlib.import_module(module), name)


def test_prometheus_shim_is_the_observability_module() -> None:
    from backbeat.observability import prometheus as real
    from backbeat.prometheus import PrometheusMetrics

    assert PrometheusMetrics is real.PrometheusMetrics
