"""Building Task records from callables, job instances and bus descriptors: references, data,
triggers and options carried in, and clear errors for what cannot be built."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from backbeat.api.taskbuild import (
    callable_template,
    from_callable,
    from_descriptor,
    from_job,
    shareable,
    stamp,
)
from backbeat.errors import (
    ConfigurationError,
    EncodingError,
    InvalidTriggerError,
    NotPersistableError,
    UnknownJobError,
)
from backbeat.model import codec
from backbeat.model.jobs import (
    RecurrentBackgroundJob,
    RecurrentTaskDescriptor,
    ScheduledBackgroundJob,
    ScheduledTaskDescriptor,
    TaskDescriptor,
    backgroundjob,
)
from backbeat.model.records import TaskOptions
from backbeat.model.registry import JobRegistry
from backbeat.model.triggers import make_trigger_spec
from backbeat.policies.definitions import CircuitBreakerPolicy, RetryPolicy

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
HOUR = make_trigger_spec("interval", hours=1, start_date=T0 + timedelta(minutes=5), now=T0)


async def send_report(recipient: str, since: datetime, *, urgent: bool = False) -> None:
    """A module-level job: stored by reference."""


@RetryPolicy(max_attempts=4, jitter=0).apply
@CircuitBreakerPolicy(failure_threshold=2, name="mail").apply
async def send_with_policies() -> None:
    """A job whose decorators' policies go into its tasks' options."""


@backgroundjob(name="Reminder")
class ReminderJob(ScheduledBackgroundJob):
    def __init__(self, order_id: str, minutes: int) -> None:
        self.order_id = order_id
        self.minutes = minutes

    async def run_at(self, *args: Any, **kwargs: Any) -> None:
        pass


@backgroundjob()
class SyncJob(RecurrentBackgroundJob):
    def __init__(self, source: str) -> None:
        self.source = source

    async def run_every(self, *args: Any, **kwargs: Any) -> None:
        pass


@pytest.fixture
def registry() -> JobRegistry:
    registry = JobRegistry()
    registry.register_job_class(ReminderJob)
    registry.register_job_class(SyncJob)
    return registry


# -- callables -----------------------------------------------------------------------------------


def test_a_module_function_is_stored_by_reference_with_its_arguments_trigger_and_options(
    registry: JobRegistry,
) -> None:
    options = TaskOptions(max_instances=3, coalesce=False, misfire_grace_time=None, executor="threads")
    built = from_callable(
        registry,
        send_report,
        trigger=HOUR,
        options=options,
        args=["ops@example.com", T0],
        kwargs={"urgent": True},
        tags=["reports", "daily", "reports"],
        now=T0,
    )
    task = built.task

    assert not built.local
    assert task.job == f"func:{__name__}:send_report"
    assert task.name == "send_report"
    assert task.trigger == HOUR
    assert task.next_run_time == T0 + timedelta(minutes=5)
    assert task.options == options
    assert task.tags == ("reports", "daily")
    assert task.created_at == T0
    assert re.fullmatch(r"[0-9a-f]{32}", task.id)
    assert codec.decode(task.args, path="args") == ["ops@example.com", T0]
    assert task.kwargs == {"urgent": True}


def test_a_given_id_and_name_are_kept(registry: JobRegistry) -> None:
    task = from_callable(
        registry,
        send_report,
        trigger=HOUR,
        options=TaskOptions(),
        task_id="daily-report",
        name="Daily",
        now=T0,
    ).task
    assert (task.id, task.name) == ("daily-report", "Daily")


def test_a_lambda_is_a_local_task_and_refused_when_durable(registry: JobRegistry) -> None:
    built = from_callable(registry, lambda: None, trigger=HOUR, options=TaskOptions(), now=T0)
    assert built.local and built.task.job.startswith("local:")

    def helper() -> None:
        pass

    with pytest.raises(NotPersistableError, match=r"helper.*lambda, closure or local function.*module-level"):
        from_callable(registry, helper, trigger=HOUR, options=TaskOptions(), durable=True, now=T0)


def test_an_argument_that_cannot_be_stored_is_named(registry: JobRegistry) -> None:
    with pytest.raises(EncodingError, match=r"args\[1\]: cannot store a value of type object"):
        from_callable(
            registry, send_report, trigger=HOUR, options=TaskOptions(), args=["x", object()], now=T0
        )
    with pytest.raises(EncodingError, match=r"kwargs\['since'\]"):
        from_callable(
            registry, send_report, trigger=HOUR, options=TaskOptions(), kwargs={"since": object()}, now=T0
        )


def test_a_keyword_argument_whose_name_is_not_a_str_is_refused(registry: JobRegistry) -> None:
    # storable (as pairs), but no call could pass it: the run would fail with a TypeError each time
    with pytest.raises(EncodingError, match=r"kwargs: the key 1 is a int, not a keyword name"):
        from_callable(registry, send_report, trigger=HOUR, options=TaskOptions(), kwargs={1: "x"}, now=T0)  # type: ignore[dict-item]


@pytest.mark.parametrize(
    ("tags", "message"),
    [
        ("urgent", r"tags must be a list of strings, not the string 'urgent'"),
        (["a", 7], r"tag 7 is a int, not a str"),
    ],
)
def test_tags_that_are_not_strings_are_refused(registry: JobRegistry, tags: Any, message: str) -> None:
    with pytest.raises(TypeError, match=message):
        from_callable(registry, send_report, trigger=HOUR, options=TaskOptions(), tags=tags, now=T0)


def test_tags_keep_their_order_without_repeats(registry: JobRegistry) -> None:
    built = from_callable(
        registry, send_report, trigger=HOUR, options=TaskOptions(), tags=["b", "a", "b"], now=T0
    )
    assert built.task.tags == ("b", "a")


def test_a_trigger_that_never_fires_is_refused_naming_the_task(registry: JobRegistry) -> None:
    ended = make_trigger_spec(
        "interval", seconds=30, start_date=T0 - timedelta(hours=1), end_date=T0 - timedelta(minutes=1), now=T0
    )
    with pytest.raises(InvalidTriggerError, match=r"'send_report'.*never fires"):
        from_callable(registry, send_report, trigger=ended, options=TaskOptions(), now=T0)


def test_the_policies_decorating_a_function_go_into_the_options_unless_given(registry: JobRegistry) -> None:
    task = from_callable(registry, send_with_policies, trigger=HOUR, options=TaskOptions(), now=T0).task
    assert task.options.retry == RetryPolicy(max_attempts=4, jitter=0).to_json()
    assert task.options.circuit_breaker == CircuitBreakerPolicy(failure_threshold=2, name="mail").to_json()

    explicit = RetryPolicy(max_attempts=9).to_json()
    task = from_callable(
        registry, send_with_policies, trigger=HOUR, options=TaskOptions(retry=explicit), now=T0
    ).task
    assert task.options.retry == explicit


def test_tasks_stamped_from_one_template_share_it_but_not_their_ids_or_arguments(
    registry: JobRegistry,
) -> None:
    template = callable_template(registry, send_report, trigger=HOUR, options=TaskOptions(), now=T0)
    first = stamp(template, args=["a@example.com", T0]).task
    second = stamp(template, args=["b@example.com", T0], tags=["b"]).task
    assert first.id != second.id
    assert (first.job, first.next_run_time) == (second.job, second.next_run_time)
    assert (first.args[0], second.args[0], second.tags) == ("a@example.com", "b@example.com", ("b",))
    assert shareable(HOUR) and not shareable({**HOUR, "jitter": 5})


# -- job instances -------------------------------------------------------------------------------


def test_a_scheduled_job_instance_keeps_its_business_data_and_time(registry: JobRegistry) -> None:
    job = ReminderJob("order-42", minutes=15)
    job.__scheduled_at__ = T0 + timedelta(hours=2)
    job.__task_id__ = "reminder-42"
    task = from_job(registry, job, options=TaskOptions(), default_timezone="UTC", tags=["orders"], now=T0)

    assert (task.id, task.name, task.job) == ("reminder-42", "ReminderJob", "job:Reminder")
    assert task.data == {"order_id": "order-42", "minutes": 15}
    assert task.trigger["type"] == "date"
    assert task.next_run_time == T0 + timedelta(hours=2)
    assert task.tags == ("orders",)


def test_a_scheduled_job_without_a_time_runs_now(registry: JobRegistry) -> None:
    task = from_job(registry, ReminderJob("o", 1), options=TaskOptions(), default_timezone="UTC", now=T0)
    assert task.next_run_time == T0


def test_a_recurrent_job_instance_runs_every_its_interval(registry: JobRegistry) -> None:
    job = SyncJob("crm")
    job.__interval__ = 30
    task = from_job(registry, job, options=TaskOptions(max_instances=2), default_timezone="UTC", now=T0)
    assert (task.trigger["type"], task.trigger["seconds"]) == ("interval", 30)
    assert task.next_run_time == T0 + timedelta(seconds=30)
    assert task.options.max_instances == 2
    assert task.data == {"source": "crm"}


def test_a_recurrent_job_without_an_interval_is_refused(registry: JobRegistry) -> None:
    with pytest.raises(UnknownJobError, match=r"SyncJob.__interval__ is not set"):
        from_job(registry, SyncJob("crm"), options=TaskOptions(), default_timezone="UTC", now=T0)


def test_a_job_attribute_that_cannot_be_stored_is_named(registry: JobRegistry) -> None:
    job = ReminderJob("o", 1)
    job.minutes = object()  # type: ignore[assignment]
    with pytest.raises(EncodingError, match=r"ReminderJob\.data"):
        from_job(registry, job, options=TaskOptions(), default_timezone="UTC", now=T0)


# -- descriptors ---------------------------------------------------------------------------------


def test_a_scheduled_descriptor_names_a_registered_job_and_carries_its_data(registry: JobRegistry) -> None:
    descriptor = ScheduledTaskDescriptor(
        id="d1", name="Reminder", data={"order_id": "o-7", "at": T0}, scheduled_at=T0 + timedelta(minutes=1)
    )
    task = from_descriptor(registry, descriptor, options=TaskOptions(), default_timezone="UTC", now=T0)
    assert (task.id, task.name, task.job) == ("d1", "Reminder", "job:Reminder")
    assert task.next_run_time == T0 + timedelta(minutes=1)
    assert task.data is not None and codec.decode(task.data, path="data") == {"order_id": "o-7", "at": T0}


def test_a_recurrent_descriptor_starts_at_its_start_time(registry: JobRegistry) -> None:
    start = T0 + timedelta(minutes=10)
    descriptor = RecurrentTaskDescriptor(id="d2", name="SyncJob", data={}, interval=60, started_at=start)
    task = from_descriptor(registry, descriptor, options=TaskOptions(), default_timezone="UTC", now=T0)
    assert (task.trigger["type"], task.trigger["seconds"]) == ("interval", 60)
    assert task.next_run_time == start


@pytest.mark.parametrize(
    ("descriptor", "message"),
    [
        (
            ScheduledTaskDescriptor(id="x", name="Nope", data={}, scheduled_at=T0),
            r"no @backgroundjob.*'Nope'",
        ),
        (
            ScheduledTaskDescriptor(id="x", name="SyncJob", data={}, scheduled_at=T0),
            "SyncJob is not a scheduled",
        ),
        (
            RecurrentTaskDescriptor(id="x", name="Reminder", data={}, interval=5),
            "Reminder is not a recurrent",
        ),
        (TaskDescriptor(id="x", name="Reminder", data={}), "plain TaskDescriptor has no time"),
    ],
)
def test_a_descriptor_that_fits_no_registered_job_is_refused_saying_why(
    registry: JobRegistry, descriptor: TaskDescriptor, message: str
) -> None:
    with pytest.raises(UnknownJobError, match=message):
        from_descriptor(registry, descriptor, options=TaskOptions(), default_timezone="UTC", now=T0)


def test_a_descriptor_whose_interval_is_invalid_is_refused(registry: JobRegistry) -> None:
    descriptor = RecurrentTaskDescriptor(id="x", name="SyncJob", data={}, interval=-5)
    with pytest.raises(InvalidTriggerError):
        from_descriptor(registry, descriptor, options=TaskOptions(), default_timezone="UTC", now=T0)


def plain_job() -> None:
    """A plain function: it runs in a thread, which a cancel cannot stop."""


async def async_job() -> None:
    """A coroutine function: a cancel stops it."""


def test_cancel_other_is_refused_for_a_plain_function_and_taken_for_an_async_one() -> None:
    registry = JobRegistry()
    spec = make_trigger_spec("interval", seconds=10, now=T0)
    options = TaskOptions(overlap="cancel_other")
    with pytest.raises(ConfigurationError, match="plain_job: overlap='cancel_other' needs an async job"):
        from_callable(registry, plain_job, trigger=spec, options=options, now=T0)
    assert from_callable(registry, async_job, trigger=spec, options=options, now=T0).task.options.overlap == (
        "cancel_other"
    )
    assert from_callable(registry, plain_job, trigger=spec, options=TaskOptions(overlap="buffer_one"), now=T0)
