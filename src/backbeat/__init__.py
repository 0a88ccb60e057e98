"""backbeat: a distributed, asyncio-first background task scheduler.

Public names only; see the README for a tour.
"""

from __future__ import annotations

from backbeat.abc import Executor, HostedService, Store
from backbeat.api.backfill import BackfillProgress
from backbeat.api.bus import BackgroundTasksBus, ScheduleRequest
from backbeat.api.config import (
    MongoJobStoreConfig,
    PostgresJobStoreConfig,
    RedisJobStoreConfig,
    SchedulerConfig,
    SQLiteJobStoreConfig,
)
from backbeat.api.options import BackgroundTaskSchedulerOptions
from backbeat.api.scheduler import BackgroundTaskScheduler
from backbeat.api.tasklist import TaskInfo, TaskPage
from backbeat.engine.context import RunContext, current_run, get_service
from backbeat.errors import (
    BackbeatError,
    ConfigurationError,
    CorruptRecordError,
    DecodingError,
    EncodingError,
    InvalidTriggerError,
    LeaseLostError,
    NotPersistableError,
    SchedulerNotRunningError,
    StoreClosedError,
    StoreError,
    StoreUnavailableError,
    TaskExistsError,
    TaskNotFoundError,
    UnknownJobError,
)
from backbeat.executors import (
    AsyncIOExecutor,
    CustomTaskExecutor,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
)
from backbeat.hosting.application import (
    ApplicationSettings,
    WebApplication,
    WebApplicationBuilder,
    hosted_lifespan,
)
from backbeat.hosting.di import (
    ServiceCollection,
    ServiceLifetime,
    ServiceProvider,
    ServiceProviderBase,
    ServiceScope,
)
from backbeat.model.declared import schedule_task
from backbeat.model.events import EventKind, SchedulerEvent
from backbeat.model.history import HistoryEntry, HistoryOutcome, HistoryPage
from backbeat.model.jobs import (
    BackgroundJob,
    RecurrentBackgroundJob,
    RecurrentTaskDescriptor,
    ScheduledBackgroundJob,
    ScheduledTaskDescriptor,
    TaskDescriptor,
    backgroundjob,
    deserialize_task,
)
from backbeat.model.overlap import Overlap
from backbeat.model.records import DeadLetter
from backbeat.observability.metrics import instrument_scheduler
from backbeat.observability.prometheus import PrometheusMetrics, metrics_app
from backbeat.observability.taskmetrics import MetricsCollector, TaskMetrics
from backbeat.policies.definitions import (
    CircuitBreakerPolicy,
    CircuitOpenError,
    RetryPolicy,
    circuit_breaker,
    retry_policy,
)
from backbeat.policies.handlers import TaskExecutionResult, TaskFailureHandler

__all__ = [
    "ApplicationSettings",
    "AsyncIOExecutor",
    "BackbeatError",
    "BackfillProgress",
    "BackgroundJob",
    "BackgroundTaskScheduler",
    "BackgroundTaskSchedulerOptions",
    "BackgroundTasksBus",
    "CircuitBreakerPolicy",
    "CircuitOpenError",
    "ConfigurationError",
    "CorruptRecordError",
    "CustomTaskExecutor",
    "DeadLetter",
    "DecodingError",
    "EncodingError",
    "EventKind",
    "Executor",
    "HistoryEntry",
    "HistoryOutcome",
    "HistoryPage",
    "HostedService",
    "InvalidTriggerError",
    "LeaseLostError",
    "MetricsCollector",
    "MongoJobStoreConfig",
    "NotPersistableError",
    "Overlap",
    "PostgresJobStoreConfig",
    "ProcessPoolExecutor",
    "PrometheusMetrics",
    "RecurrentBackgroundJob",
    "RecurrentTaskDescriptor",
    "RedisJobStoreConfig",
    "RetryPolicy",
    "RunContext",
    "SQLiteJobStoreConfig",
    "ScheduleRequest",
    "ScheduledBackgroundJob",
    "ScheduledTaskDescriptor",
    "SchedulerConfig",
    "SchedulerEvent",
    "SchedulerNotRunningError",
    "ServiceCollection",
    "ServiceLifetime",
    "ServiceProvider",
    "ServiceProviderBase",
    "ServiceScope",
    "Store",
    "StoreClosedError",
    "StoreError",
    "StoreUnavailableError",
    "TaskDescriptor",
    "TaskExecutionResult",
    "TaskExistsError",
    "TaskFailureHandler",
    "TaskInfo",
    "TaskMetrics",
    "TaskNotFoundError",
    "TaskPage",
    "ThreadPoolExecutor",
    "UnknownJobError",
    "WebApplication",
    "WebApplicationBuilder",
    "backgroundjob",
    "circuit_breaker",
    "current_run",
    "deserialize_task",
    "get_service",
    "hosted_lifespan",
    "instrument_scheduler",
    "metrics_app",
    "retry_policy",
    "schedule_task",
]
