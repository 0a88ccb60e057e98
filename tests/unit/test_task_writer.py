"""Single adds: the fast path (a one-shot of a function seen before) stores exactly the task the
general path builds, and whatever it cannot build (unhashable options, local functions, other
triggers) is built by the general path, with its checks."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from backbeat import BackgroundTaskScheduler
from backbeat.api.taskbuild import from_callable
from backbeat.errors import ConfigurationError, NotPersistableError, TaskExistsError
from backbeat.model.jobs import RecurrentBackgroundJob, RecurrentTaskDescriptor, backgroundjob
from backbeat.model.records import Task
from backbeat.model.triggers import make_trigger_spec
from backbeat.policies.definitions import RetryPolicy
from backbeat.stores.memory import MemoryStore

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


async def remind(order_id: str, *, urgent: bool = False) -> None:
    """A module-level job: stored by reference."""


@RetryPolicy(max_attempts=4, jitter=0).apply
async def remind_with_retries(order_id: str) -> None:
    """A job whose decorator's policy goes into its tasks' options."""


def scheduler(**kwargs: Any) -> tuple[BackgroundTaskScheduler, MemoryStore]:
    store = MemoryStore()
    return BackgroundTaskScheduler(store=store, clock=lambda: T0, **kwargs), store


def fields(task: Task) -> dict[str, Any]:
    """Everything stored but the id."""
    return {k: v for k, v in task.to_document().items() if k != "id"}


CASES = [
    pytest.param({}, {"run_date": T0 + timedelta(hours=1)}, id="aware"),
    pytest.param({}, {"run_date": datetime(2026, 1, 5, 11, 0)}, id="naive"),
    pytest.param({"timezone": "Europe/Paris"}, {"run_date": datetime(2026, 3, 29, 2, 30)}, id="paris-gap"),
    pytest.param({"job_defaults": {"max_instances": 2}}, {"run_date": T0}, id="job-defaults"),
]


@pytest.mark.parametrize(("settings", "trigger_args"), CASES)
@pytest.mark.parametrize("func", [remind, remind_with_retries])
async def test_a_one_shot_add_stores_what_the_general_path_builds(
    settings: dict[str, Any], trigger_args: dict[str, Any], func: Any
) -> None:
    facade, store = scheduler(**settings)
    request: dict[str, Any] = {
        "args": ["A-1"],
        "tags": ["orders", "orders", "eu"],
        "name": "reminder",
        "options": {"coalesce": False},
    }
    spec = make_trigger_spec("date", default_timezone=facade.timezone, now=T0, **trigger_args)
    general = from_callable(
        facade.registry,
        func,
        trigger=spec,
        options=facade._writer.options_for(spec, request["options"]),
        name=request["name"],
        args=request["args"],
        tags=request["tags"],
        now=T0,
    ).task
    for _ in range(2):  # the second add uses the job shape cached by the first
        single = await facade.add_task(func, "date", **request, **trigger_args)
        [batched] = await facade.add_tasks([{"func": func, "trigger": "date", **request, **trigger_args}])
        for task_id in (single, batched):
            stored = await store.get(task_id)
            assert stored is not None and fields(stored) == fields(general)
    assert facade._writer._shapes  # the fast path was taken


async def test_the_facades_one_shot_calls_take_the_fast_path_with_their_own_options() -> None:
    facade, store = scheduler()
    plain = await facade.schedule_delayed_task("a", remind, delay_seconds=30, args=["A-1"])
    capped = await facade.schedule_at("b", remind, T0, args=["A-2"], max_instances=5)
    later = await facade.schedule_immediate_task("c", remind, args=["A-3"], kwargs={"urgent": True})
    tasks = {task_id: await store.get(task_id) for task_id in (plain, capped, later)}
    assert [(t.name, t.next_run_time, t.options.max_instances) for t in tasks.values() if t] == [
        ("a", T0 + timedelta(seconds=30), 1),
        ("b", T0, 5),
        ("c", T0, 1),
    ]
    assert len(facade._writer._shapes) == 2  # one per set of options


async def test_unhashable_options_and_bad_options_go_through_the_general_path() -> None:
    facade, store = scheduler()
    retry = {"max_attempts": 2, "jitter": 0}
    task_id = await facade.add_task(remind, "date", run_date=T0, options={"retry": retry})
    task = await store.get(task_id)
    assert task is not None and task.options.retry is not None
    assert task.options.retry["max_attempts"] == 2
    with pytest.raises(ConfigurationError, match="unknown job option"):
        await facade.add_task(remind, "date", run_date=T0, options={"colour": "blue"})
    with pytest.raises(ConfigurationError, match="max_instances"):
        await facade.add_task(remind, "date", run_date=T0, options={"max_instances": 0})
    assert await store.get(task_id) is not None and len(facade._writer._shapes) == 0


async def test_a_local_function_warns_at_every_add_and_is_refused_when_durable(
    caplog: pytest.LogCaptureFixture,
) -> None:
    facade, _ = scheduler()

    async def nested() -> None:
        pass

    with caplog.at_level(logging.WARNING, logger="backbeat"):
        for _ in range(2):
            await facade.add_task(nested, "date", run_date=T0)
    assert sum("no import path" in record.getMessage() for record in caplog.records) == 2
    assert [info.local for info in await facade.list_tasks()] == [True, True]
    for _ in range(2):
        with pytest.raises(NotPersistableError):
            await facade.add_task(nested, "date", run_date=T0, durable=True)


@backgroundjob(name="PlainTick")
class PlainTick(RecurrentBackgroundJob):
    """A job class whose run is a plain method: a cancel cannot stop it."""

    def run_every(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        pass


async def test_a_descriptor_asking_cancel_other_of_a_plain_job_is_refused() -> None:
    facade, store = scheduler()
    facade.registry.register_job_class(PlainTick)
    descriptor = RecurrentTaskDescriptor(
        id="tick", name="PlainTick", data={}, interval=60, options={"overlap": "cancel_other"}
    )
    with pytest.raises(ConfigurationError, match="PlainTick: overlap='cancel_other' needs an async job"):
        await facade.schedule_descriptor(descriptor)
    assert (await store.list())[0] == []


async def test_options_equal_in_value_but_not_in_type_are_each_checked() -> None:
    facade, _ = scheduler()
    await facade.add_task(remind, "date", run_date=T0, args=["A-1"], options={"max_instances": 1})
    with pytest.raises(ConfigurationError, match="max_instances"):
        await facade.add_task(remind, "date", run_date=T0, args=["A-2"], options={"max_instances": 1.0})


async def test_an_id_given_twice_in_one_batch_is_refused_naming_it_and_nothing_is_stored() -> None:
    facade, store = scheduler()
    requests = [
        {"func": remind, "trigger": "date", "run_date": T0, "id": "same"},
        {"func": remind, "trigger": "date", "run_date": T0, "id": "other"},
        {"func": remind, "trigger": "date", "run_date": T0, "id": "same"},
    ]
    with pytest.raises(TaskExistsError, match=r"task ids given more than once in one call: same$"):
        await facade.add_tasks(requests)
    assert (await store.list())[0] == []
