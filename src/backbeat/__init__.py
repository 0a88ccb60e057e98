"""backbeat: a distributed, asyncio-first background task scheduler.

Public names only; see the README for a tour.
"""

from __future__ import annotations

from backbeat.abc import Store
from backbeat.bus import BackgroundTasksBus, ScheduleRequest
from backbeat.config import (
    MongoJobStoreConfig,
    PostgresJobStoreConfig,
    RedisJobStoreConfig,
    SchedulerConfig,
    SQLiteJobStoreConfig,
)
from backbeat.context import RunContext, current_run, get_service
from backbeat.declared import schedule_task
from backbeat.di import (
    ServiceCollection,
    ServiceLifetime,
    ServiceProvider,
    ServiceProviderBase,
    ServiceScope,
)
from backbeat.errors import (
    BackbeatError,
    ConfigurationError,
    CorruptRecordError,
    DecodingError,
    EncodingError,
    InvalidTriggerError,
    NotPersistableError,
    SchedulerNotRunningError,
    StoreError,
    StoreUnavailableError,
    TaskExistsError,
    TaskNotFoundError,
    UnknownJobError,
)
from backbeat.events import EventKind, SchedulerEvent
from backbeat.executors import (
    AsyncIOExecutor,
    CustomTaskExecutor,
    Executor,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
)
from backbeat.handlers import TaskExecutionResult, TaskFailureHandler
from backbeat.hosting import (
    ApplicationSettings,
    HostedService,
    WebApplication,
    WebApplicationBuilder,
    hosted_lifespan,
)
from backbeat.jobs import (
    BackgroundJob,
    RecurrentBackgroundJob,
    RecurrentTaskDescriptor,
    ScheduledBackgroundJob,
    ScheduledTaskDescriptor,
    TaskDescriptor,
    backgroundjob,
    deserialize_task,
)
from backbeat.metrics import instrument_scheduler
from backbeat.model import DeadLetter
from backbeat.options import BackgroundTaskSchedulerOptions
from backbeat.policies import (
    CircuitBreakerPolicy,
    CircuitOpenError,
    RetryPolicy,
    circuit_breaker,
    retry_policy,
)
from backbeat.prometheus import PrometheusMetrics, metrics_app
from backbeat.scheduler import BackgroundTaskScheduler
from backbeat.tasklist import TaskInfo
from backbeat.taskmetrics import MetricsCollector, TaskMetrics

__all__ = [
    "ApplicationSettings",
    "AsyncIOExecutor",
    "BackbeatError",
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
    "HostedService",
    "InvalidTriggerError",
    "MetricsCollector",
    "MongoJobStoreConfig",
    "NotPersistableError",
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
    "StoreError",
    "StoreUnavailableError",
    "TaskDescriptor",
    "TaskExecutionResult",
    "TaskExistsError",
    "TaskFailureHandler",
    "TaskInfo",
    "TaskMetrics",
    "TaskNotFoundError",
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
