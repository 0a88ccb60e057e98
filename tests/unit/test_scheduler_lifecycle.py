"""The facade's life: a start that fails part-way undoes what it did; shutdown closes every store."""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import Callable
from typing import Any

import pytest
from tests.fakes import noop, settle

from backbeat import BackgroundTaskScheduler, get_service
from backbeat.api.scheduler import SchedulerState
from backbeat.errors import ConfigurationError, SchedulerNotRunningError, StoreError
from backbeat.model.records import Claim, Task, TaskFilter
from backbeat.stores.memory import MemoryStore


class RecordingStore(MemoryStore):
    """A memory store that counts opens and closes (into ``log``) and can be told to fail listing."""

    def __init__(self, name: str = "durable", log: builtins.list[str] | None = None) -> None:
        super().__init__()
        self.name = name
        self.log = log if log is not None else []
        self.opened = 0
        self.closed = 0
        self.fail_listing = False
        self.claims = 0

    async def claim_due(self, owner: str, **kwargs: Any) -> Claim:
        self.claims += 1
        return await super().claim_due(owner, **kwargs)

    async def open(self) -> None:
        self.opened += 1
        self.log.append(f"open {self.name}")

    async def close(self) -> None:
        self.closed += 1
        self.log.append(f"close {self.name}")

    async def list(
        self, filter: TaskFilter | None = None, *, cursor: str | None = None, limit: int | None = None
    ) -> tuple[builtins.list[Task], str | None]:
        if self.fail_listing:
            raise StoreError("listing failed")
        return await super().list(filter, cursor=cursor, limit=limit)


class RecordingExecutor:
    """An executor that records its lifecycle and runs calls inline."""

    def __init__(self) -> None:
        self.events: list[str] = []

    async def start(self) -> None:
        self.events.append("start")

    async def shutdown(self, wait: bool = True) -> None:
        self.events.append(f"shutdown(wait={wait})")

    async def submit(self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        return func(*args, **kwargs)


class Provider:
    def get_service(self, service_type: type[Any]) -> Any:
        return f"provided {service_type.__name__}"


def state_of(scheduler: BackgroundTaskScheduler) -> SchedulerState:
    return scheduler.state


def scheduler_on(store: RecordingStore, executor: RecordingExecutor) -> BackgroundTaskScheduler:
    return BackgroundTaskScheduler(
        store=store, executors={"default": executor}, service_provider=Provider(), owner="lifecycle"
    )


async def test_a_failed_start_closes_what_it_opened_and_stays_stopped() -> None:
    store, executor = RecordingStore(), RecordingExecutor()
    scheduler = scheduler_on(store, executor)
    store.fail_listing = True  # the start fails after the stores, executors and provider are set up

    with pytest.raises(StoreError, match="listing failed"):
        await scheduler.start_async()

    assert scheduler.state is SchedulerState.STOPPED
    assert not scheduler.running
    assert (store.opened, store.closed) == (1, 1)
    assert executor.events == ["start", "shutdown(wait=True)"]
    with pytest.raises(SchedulerNotRunningError):
        get_service(str)  # the provider pushed by the failed start was withdrawn
    assert scheduler.active_runs() == []


async def test_a_scheduler_starts_after_a_failed_start_once_the_fault_is_gone() -> None:
    store, executor = RecordingStore(), RecordingExecutor()
    scheduler = scheduler_on(store, executor)
    store.fail_listing = True
    with pytest.raises(StoreError):
        await scheduler.start_async()

    store.fail_listing = False
    await scheduler.start_async()
    try:
        assert state_of(scheduler) is SchedulerState.RUNNING
        assert get_service(str) == "provided str"
    finally:
        await scheduler.stop_async()
    assert state_of(scheduler) is SchedulerState.STOPPED


async def test_shutdown_closes_the_durable_and_the_local_store_in_reverse_order_of_opening() -> None:
    log: list[str] = []
    store, executor = RecordingStore("durable", log), RecordingExecutor()
    scheduler = scheduler_on(store, executor)
    scheduler._router.local = RecordingStore("local", log)  # to see the local store closed too

    await scheduler.start_async()
    await scheduler.stop_async(timeout=0)

    assert log == ["open durable", "open local", "close local", "close durable"]
    assert executor.events == ["start", "shutdown(wait=False)"]
    with pytest.raises(SchedulerNotRunningError):
        get_service(str)


async def test_start_twice_and_stop_twice_are_harmless() -> None:
    store, executor = RecordingStore(), RecordingExecutor()
    scheduler = scheduler_on(store, executor)
    await scheduler.start_async()
    await scheduler.start_async()
    assert store.opened == 1
    await scheduler.stop_async()
    await scheduler.stop_async()
    assert store.closed == 1
    assert scheduler.state is SchedulerState.STOPPED


async def test_a_producer_that_never_starts_opens_its_store_once_and_shutdown_closes_it() -> None:
    store = RecordingStore()
    producer = BackgroundTaskScheduler(store=store, role="producer")

    await asyncio.gather(*(producer.schedule_delayed_task(f"t{i}", noop, delay_minutes=5) for i in range(50)))
    await producer.schedule_immediate_task("one more", noop)

    assert (store.opened, store.closed) == (1, 0)
    tasks, _ = await store.list()
    assert len(tasks) == 51
    await producer.shutdown()
    assert (store.opened, store.closed) == (1, 1)


async def test_a_started_producer_runs_no_engine_and_claims_nothing() -> None:
    store = RecordingStore()
    producer = BackgroundTaskScheduler(store=store, role="producer")
    await producer.start_async()
    try:
        await producer.schedule_immediate_task("due now", noop)
        await settle()  # a worker would have claimed the due task by now
        assert producer._router.engine is None
        assert store.claims == 0
        assert await store.list_runs() == []  # nobody fired the due task
    finally:
        await producer.shutdown()
    assert (store.opened, store.closed) == (1, 1)


def test_producer_only_is_the_producer_role_and_a_contradiction_is_an_error() -> None:
    assert BackgroundTaskScheduler(store="memory://", producer_only=True).role == "producer"
    assert BackgroundTaskScheduler(store="memory://").role == "worker"
    with pytest.raises(ConfigurationError, match="contradicts"):
        BackgroundTaskScheduler(store="memory://", producer_only=True, role="worker")
    with pytest.raises(ConfigurationError, match="role must be"):
        BackgroundTaskScheduler(store="memory://", role="consumer")  # type: ignore[arg-type]  # wrong on purpose


class SlowOpeningStore(RecordingStore):
    """Its ``open`` takes a while (as a server's does), so concurrent first calls overlap."""

    async def open(self) -> None:
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        await super().open()


async def test_concurrent_first_calls_of_every_kind_open_the_store_once() -> None:
    store = SlowOpeningStore()
    producer = BackgroundTaskScheduler(store=store, role="producer")
    await asyncio.gather(
        producer.get_task_info("none"),
        producer.list_dead_letters(),
        producer.list_tasks(),
        producer.orphaned_tasks(),
        producer.schedule_delayed_task("t", noop, delay_minutes=5),
    )
    assert store.opened == 1
    await producer.shutdown()
    assert store.closed == 1


@pytest.mark.parametrize(
    ("owner", "error", "message"),
    [
        ("worker-\ud800", ValueError, "owner 'worker-\\\\ud800' holds a lone surrogate"),
        ("worker\x001", ValueError, "owner 'worker\\\\x001' holds a NUL character"),
        ("w" * 1025, ValueError, "owner 'w+'\\.\\.\\. is 1,025 bytes long in UTF-8, past the 1,024"),
        (7, TypeError, "owner 7 is a int, not a str"),
    ],
)
def test_an_owner_no_store_can_keep_is_refused_when_the_scheduler_is_made(
    owner: Any, error: type[Exception], message: str
) -> None:
    # before: taken as given, it failed later in the store: SQL, memory and MongoDB completions
    # with history raised out of the engine on a lone surrogate, PostgreSQL refused a NUL
    with pytest.raises(error, match=f"^{message}"):
        BackgroundTaskScheduler(store=MemoryStore(), owner=owner)


def test_an_empty_owner_is_the_default_one() -> None:
    assert BackgroundTaskScheduler(store=MemoryStore(), owner="").engine_config.owner
