"""Seed 003 (Neuroglia's "Background Task Scheduling" page): each snippet runs on backbeat.

Only the ``from neuroglia... import`` lines differ (and mypy's ignores). The user's services
(KitchenService, DeliveryService, ...) and Neuroglia's eventing/reactive classes (EventHandler, DomainEvent,
StreamProcessor, Observable) are not scheduler features: minimal stand-ins, named as such,
take their place. Where a snippet calls methods it does not show (``self.dispatch_delivery``,
``self.check_inventory``...), they are added after the verbatim part, marked "not in the seed".

``ResilientOrderProcessor`` and ``OrderTaskMonitor`` run in ``test_seed_003_resilience.py``;
``PizzaOrderMetrics`` (TaskMetrics/MetricsCollector) with the metrics tests. The mermaid diagram
is not Python.
"""

from __future__ import annotations

import asyncio
import importlib
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Generic, TypeVar, cast
from unittest.mock import AsyncMock, Mock

import pytest

from backbeat import (
    BackgroundTaskScheduler,
    CustomTaskExecutor,
    EventKind,
    RedisJobStoreConfig,
    SchedulerConfig,
    SchedulerEvent,
    ServiceProviderBase,
    WebApplication,
    WebApplicationBuilder,
    schedule_task,  # noqa: F401 - imported by the seed's snippet; used in seed003_tasks
)
from backbeat.model.declared import DECLARED
from tests.e2e import seed003_jobs
from tests.e2e.redis_store import needs_redis_store
from tests.scheduling import wait_for

REDIS_URL = "redis://127.0.0.1:6379"
RECORDED: list[tuple[str, tuple[Any, ...]]] = []


@pytest.fixture(autouse=True)
def _recorded() -> Iterator[None]:
    RECORDED.clear()
    yield
    RECORDED.clear()


def sqlite_store(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/seed003.db"


def fast(**overrides: Any) -> SchedulerConfig:
    return SchedulerConfig(poll_interval=0.2, shutdown_timeout=5.0, **overrides)


async def eventually(probe: Callable[[], Any], timeout: float = 8.0) -> Any:
    """Await ``probe()`` until it returns something truthy."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await probe()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(0.05)


# ==================================================================================================
# Stand-ins for the user's services and for Neuroglia's eventing/reactive classes
# ==================================================================================================


class KitchenService:
    """Stand-in for the user's kitchen service."""

    def __init__(self) -> None:
        self.preparations: list[str] = []

    async def notify_preparation_due(self, order_id: str) -> None:
        self.preparations.append(order_id)


class DeliveryService:
    """Stand-in for the user's delivery service."""

    def __init__(self) -> None:
        self.pickups: list[str] = []

    async def schedule_pickup(self, order_id: str) -> None:
        self.pickups.append(order_id)


E = TypeVar("E")


class DomainEvent:
    """Stand-in for ``neuroglia.eventing.DomainEvent`` (not a scheduler feature)."""

    def __init__(self) -> None:
        self.id = uuid.uuid4().hex


class EventHandler(Generic[E]):
    """Stand-in for ``neuroglia.eventing.EventHandler`` (not a scheduler feature)."""

    async def handle_async(self, event: E) -> None:
        raise NotImplementedError


class StreamProcessor:
    """Stand-in for ``neuroglia.reactive.StreamProcessor`` (not a scheduler feature)."""


class _SubjectStandIn:
    def __init__(self) -> None:
        self.handlers: list[Callable[[Any], Any]] = []

    def subscribe(self, handler: Callable[[Any], Any]) -> None:
        self.handlers.append(handler)

    async def emit(self, value: Any) -> None:
        for handler in self.handlers:
            await handler(value)


class Observable:
    """Stand-in for ``neuroglia.reactive.Observable`` (not a scheduler feature)."""

    @staticmethod
    def create_subject() -> _SubjectStandIn:
        return _SubjectStandIn()


# ==================================================================================================
# Seed 003, "Service Registration"
# ==================================================================================================


def create_app():  # type: ignore[no-untyped-def]
    builder = WebApplicationBuilder()

    # Register background task scheduler
    builder.services.add_background_task_scheduler(
        redis_url="redis://localhost:6379", job_store_prefix="mario_pizzeria"
    )

    app = builder.build()
    return app


# ==================================================================================================
# Seed 003, "Scheduled Task Definition"
# ==================================================================================================


class PizzaOrderService:
    def __init__(self, service_provider: ServiceProviderBase):
        self.service_provider = service_provider
        self.scheduler = service_provider.get_service(BackgroundTaskScheduler)

    async def schedule_order_reminders(self, order_id: str):  # type: ignore[no-untyped-def]
        """Schedule reminder tasks for a pizza order."""

        # Schedule preparation reminder (15 minutes)
        await self.scheduler.schedule_delayed_task(  # type: ignore[union-attr]
            "order_preparation_reminder",
            self.send_preparation_reminder,
            delay_minutes=15,
            args=[order_id],
            tags=["order", "reminder"],
        )

        # Schedule delivery reminder (45 minutes)
        await self.scheduler.schedule_delayed_task(  # type: ignore[union-attr]
            "order_delivery_reminder",
            self.send_delivery_reminder,
            delay_minutes=45,
            args=[order_id],
            tags=["delivery", "reminder"],
        )

    async def send_preparation_reminder(self, order_id: str):  # type: ignore[no-untyped-def]
        """Send preparation reminder to kitchen."""
        print(f"🍕 Kitchen reminder: Start preparing order {order_id}")

        # Business logic for kitchen notification
        kitchen_service = self.service_provider.get_service(KitchenService)
        await kitchen_service.notify_preparation_due(order_id)  # type: ignore[union-attr]

    async def send_delivery_reminder(self, order_id: str):  # type: ignore[no-untyped-def]
        """Send delivery reminder to delivery team."""
        print(f"🚚 Delivery reminder: Order {order_id} ready for delivery")

        # Business logic for delivery notification
        delivery_service = self.service_provider.get_service(DeliveryService)
        await delivery_service.schedule_pickup(order_id)  # type: ignore[union-attr]


# ==================================================================================================
# Seed 003, "Event-Driven Scheduling"
# ==================================================================================================


class OrderPlacedEvent(DomainEvent):
    def __init__(self, order_id: str, customer_id: str, estimated_delivery: datetime):
        super().__init__()
        self.order_id = order_id
        self.customer_id = customer_id
        self.estimated_delivery = estimated_delivery


class OrderTaskScheduler(EventHandler[OrderPlacedEvent]):
    def __init__(self, task_scheduler: BackgroundTaskScheduler):
        self.task_scheduler = task_scheduler

    async def handle_async(self, event: OrderPlacedEvent):  # type: ignore[no-untyped-def]
        """Schedule all tasks related to a new order."""

        # Schedule kitchen preparation task
        prep_time = event.estimated_delivery - timedelta(minutes=30)
        await self.task_scheduler.schedule_at(
            "kitchen_preparation",
            self.start_kitchen_preparation,
            scheduled_time=prep_time,
            args=[event.order_id],
        )

        # Schedule delivery dispatch task
        dispatch_time = event.estimated_delivery - timedelta(minutes=10)
        await self.task_scheduler.schedule_at(
            "delivery_dispatch",
            self.dispatch_delivery,
            scheduled_time=dispatch_time,
            args=[event.order_id, event.customer_id],
        )

        # Schedule customer notification task
        notify_time = event.estimated_delivery - timedelta(minutes=5)
        await self.task_scheduler.schedule_at(
            "customer_notification",
            self.notify_customer_ready,
            scheduled_time=notify_time,
            args=[event.customer_id, event.order_id],
        )

    # -- not in the seed: the task methods the snippet schedules -----------------------------------

    async def start_kitchen_preparation(self, order_id: str) -> None:
        RECORDED.append(("start_kitchen_preparation", (order_id,)))

    async def dispatch_delivery(self, order_id: str, customer_id: str) -> None:
        RECORDED.append(("dispatch_delivery", (order_id, customer_id)))

    async def notify_customer_ready(self, customer_id: str, order_id: str) -> None:
        RECORDED.append(("notify_customer_ready", (customer_id, order_id)))


# ==================================================================================================
# Seed 003, "Stream Processing Integration"
# ==================================================================================================


class OrderStreamProcessor(StreamProcessor):
    def __init__(self, task_scheduler: BackgroundTaskScheduler):
        self.task_scheduler = task_scheduler
        self.order_stream = Observable.create_subject()

    async def process_order_events(self):  # type: ignore[no-untyped-def]
        """Process continuous stream of order events."""

        async def handle_order_stream(order_event):  # type: ignore[no-untyped-def]
            if order_event.type == "order_placed":
                await self.schedule_order_workflow(order_event)  # type: ignore[no-untyped-call]
            elif order_event.type == "order_cancelled":
                await self.cancel_order_tasks(order_event.order_id)
            elif order_event.type == "order_modified":
                await self.reschedule_order_tasks(order_event)

        # Subscribe to order event stream
        self.order_stream.subscribe(handle_order_stream)

    async def schedule_order_workflow(self, order_event):  # type: ignore[no-untyped-def]
        """Schedule complete order workflow."""
        workflow_tasks = [
            ("inventory_check", 0, self.check_inventory),
            ("kitchen_queue", 5, self.add_to_kitchen_queue),
            ("preparation_start", 15, self.start_preparation),
            ("quality_check", 25, self.perform_quality_check),
            ("delivery_ready", 35, self.mark_ready_for_delivery),
        ]

        for task_name, delay_minutes, task_func in workflow_tasks:
            await self.task_scheduler.schedule_delayed_task(
                f"{task_name}_{order_event.order_id}",
                task_func,
                delay_minutes=delay_minutes,
                args=[order_event.order_id],
                tags=["workflow", order_event.order_id],
            )

    # -- not in the seed: the methods the snippet calls ---------------------------------------------

    async def cancel_order_tasks(self, order_id: str) -> list[str]:
        return await self.task_scheduler.cancel_tasks_by_tag(order_id)

    async def reschedule_order_tasks(self, order_event: Any) -> None:
        await self.cancel_order_tasks(order_event.order_id)
        await self.schedule_order_workflow(order_event)  # type: ignore[no-untyped-call]  # the seed's function: verbatim, unannotated

    async def check_inventory(self, order_id: str) -> None:
        RECORDED.append(("check_inventory", (order_id,)))

    async def add_to_kitchen_queue(self, order_id: str) -> None:
        RECORDED.append(("add_to_kitchen_queue", (order_id,)))

    async def start_preparation(self, order_id: str) -> None:
        RECORDED.append(("start_preparation", (order_id,)))

    async def perform_quality_check(self, order_id: str) -> None:
        RECORDED.append(("perform_quality_check", (order_id,)))

    async def mark_ready_for_delivery(self, order_id: str) -> None:
        RECORDED.append(("mark_ready_for_delivery", (order_id,)))


# ==================================================================================================
# Seed 003, "Redis Job Store Configuration"
# ==================================================================================================


def configure_advanced_scheduler():  # type: ignore[no-untyped-def]
    redis_config = RedisJobStoreConfig(
        host="redis://localhost:6379",
        db=1,
        password="your_redis_password",  # verbatim; ignored, host is a URL
        connection_pool_size=20,
        health_check_interval=30,
        # Job persistence settings
        job_defaults={"coalesce": True, "max_instances": 3, "misfire_grace_time": 300},
        # Distributed locking
        distributed_lock_timeout=60,
        lock_prefix="mario_pizzeria_locks",
    )

    scheduler_config = SchedulerConfig(
        job_stores={"redis": redis_config},
        executors={
            "default": {"type": "threadpool", "max_workers": 20},
            "processpool": {"type": "processpool", "max_workers": 5},
        },
        job_defaults={"coalesce": False, "max_instances": 3},
        timezone="UTC",
    )

    return scheduler_config


# ==================================================================================================
# Seed 003, "Custom Task Executors"
# ==================================================================================================


class PizzaOrderExecutor(CustomTaskExecutor):
    """Custom executor optimized for pizza order processing."""

    def __init__(self, max_concurrent_orders: int = 10):
        super().__init__()
        self.semaphore = asyncio.Semaphore(max_concurrent_orders)
        self.active_orders = set()  # type: ignore[var-annotated]

    async def execute_task(self, task_func, *args, **kwargs):  # type: ignore[no-untyped-def]
        """Execute task with order-specific resource management."""
        async with self.semaphore:
            order_id = kwargs.get("order_id") or args[0] if args else None

            if order_id:
                if order_id in self.active_orders:
                    # Skip duplicate order processing
                    return {"status": "skipped", "reason": "already_processing"}

                self.active_orders.add(order_id)

            try:
                # Execute the actual task
                result = await task_func(*args, **kwargs)
                return {"status": "completed", "result": result}

            except Exception as e:
                return {"status": "failed", "error": str(e)}

            finally:
                if order_id:
                    self.active_orders.discard(order_id)


# ==================================================================================================
# Seed 003, "Unit Testing with Mocks" (verbatim; collected and run by pytest)
# ==================================================================================================


class TestOrderTaskScheduling:
    @pytest.fixture
    def mock_scheduler(self):  # type: ignore[no-untyped-def]
        scheduler = Mock(spec=BackgroundTaskScheduler)
        scheduler.schedule_delayed_task = AsyncMock()
        scheduler.schedule_at = AsyncMock()
        return scheduler

    @pytest.fixture
    def order_service(self, mock_scheduler):  # type: ignore[no-untyped-def]
        return PizzaOrderService(mock_scheduler)

    @pytest.mark.xfail(
        strict=True,
        raises=AttributeError,
        reason="seed 003 is inconsistent: its PizzaOrderService takes a service provider and calls "
        "get_service(BackgroundTaskScheduler) on it, but the test passes Mock(spec=BackgroundTaskScheduler), "
        "which has no get_service; test_schedule_order_reminders_with_a_provider runs the same checks",
    )
    @pytest.mark.asyncio
    async def test_schedule_order_reminders(self, order_service, mock_scheduler):  # type: ignore[no-untyped-def]
        """Test order reminder scheduling."""
        order_id = "order_123"

        await order_service.schedule_order_reminders(order_id)

        # Verify preparation reminder scheduled
        mock_scheduler.schedule_delayed_task.assert_any_call(
            "order_preparation_reminder",
            order_service.send_preparation_reminder,
            delay_minutes=15,
            args=[order_id],
            tags=["order", "reminder"],
        )

        # Verify delivery reminder scheduled
        mock_scheduler.schedule_delayed_task.assert_any_call(
            "order_delivery_reminder",
            order_service.send_delivery_reminder,
            delay_minutes=45,
            args=[order_id],
            tags=["delivery", "reminder"],
        )

    @pytest.mark.asyncio
    async def test_reactive_order_processing(self, mock_scheduler):  # type: ignore[no-untyped-def]
        """Test reactive task scheduling from events."""
        event = OrderPlacedEvent("order_123", "customer_456", datetime.now() + timedelta(hours=1))
        handler = OrderTaskScheduler(mock_scheduler)

        await handler.handle_async(event)

        # Verify all order-related tasks were scheduled
        assert mock_scheduler.schedule_at.call_count == 3


class TestOrderTaskSchedulingWithProvider(TestOrderTaskScheduling):
    """The seed's unit tests with the one change they need: PizzaOrderService gets a provider."""

    @pytest.fixture
    def order_service(self, mock_scheduler):  # type: ignore[no-untyped-def]
        provider = Mock(spec=ServiceProviderBase)
        provider.get_service.side_effect = lambda t: mock_scheduler if t is BackgroundTaskScheduler else None
        return PizzaOrderService(provider)

    async def test_schedule_order_reminders(self, order_service, mock_scheduler):  # type: ignore[no-untyped-def]
        await _schedule_order_reminders_checks(order_service, mock_scheduler)


async def _schedule_order_reminders_checks(order_service: Any, mock_scheduler: Any) -> None:
    order_id = "order_123"
    await order_service.schedule_order_reminders(order_id)
    mock_scheduler.schedule_delayed_task.assert_any_call(
        "order_preparation_reminder",
        order_service.send_preparation_reminder,
        delay_minutes=15,
        args=[order_id],
        tags=["order", "reminder"],
    )
    mock_scheduler.schedule_delayed_task.assert_any_call(
        "order_delivery_reminder",
        order_service.send_delivery_reminder,
        delay_minutes=45,
        args=[order_id],
        tags=["delivery", "reminder"],
    )


# ==================================================================================================
# Seed 003, "Integration Testing" (verbatim; collected and run by pytest, on the real Redis)
# ==================================================================================================


@pytest.mark.redis
@needs_redis_store
@pytest.mark.integration
class TestSchedulerIntegration:
    @pytest.fixture
    async def redis_scheduler(self):  # type: ignore[no-untyped-def]
        scheduler = BackgroundTaskScheduler(
            redis_url="redis://localhost:6379/15",  # Test database
            job_store_prefix="test_mario_pizzeria",
        )
        await scheduler.start()
        yield scheduler
        await scheduler.shutdown()
        await scheduler.clear_all_jobs()  # Cleanup

    @pytest.mark.asyncio
    async def test_end_to_end_order_workflow(self, redis_scheduler):  # type: ignore[no-untyped-def]
        """Test complete order processing workflow."""
        order_id = "integration_test_order"  # noqa: F841 - verbatim from the seed
        executed_tasks = []

        async def track_task_execution(task_name):  # type: ignore[no-untyped-def]
            executed_tasks.append(task_name)

        # Schedule workflow tasks
        await redis_scheduler.schedule_immediate_task(
            "inventory_check", track_task_execution, args=["inventory_check"]
        )

        # Wait for task execution
        await asyncio.sleep(2)

        assert "inventory_check" in executed_tasks


# ==================================================================================================
# Tests that run the snippets above on real schedulers
# ==================================================================================================


@pytest.mark.redis
@needs_redis_store
async def test_create_app_registers_a_hosted_redis_scheduler() -> None:
    from backbeat.stores.redis import RedisStore

    app: WebApplication = create_app()  # type: ignore[no-untyped-call]  # the seed's function: verbatim, unannotated
    scheduler = app.services.get_required_service(BackgroundTaskScheduler)
    assert isinstance(scheduler.store, RedisStore)
    await scheduler.clear_all_jobs()  # the seed's fixed prefix: start from an empty key space
    seen: list[str] = []

    async def confirm(order_id: str) -> None:
        seen.append(order_id)

    try:
        async with app:
            assert scheduler.running
            await scheduler.schedule_immediate_task("confirm_order", confirm, args=["order-1"])
            durable_id = await scheduler.schedule_delayed_task(
                "reminder", seed003_jobs.write_marker, delay_minutes=15, args=["/dev/null", "x"]
            )
            await wait_for(lambda: seen == ["order-1"])
            info = await scheduler.get_task_info(durable_id)
            assert info is not None and not info.local
        assert not scheduler.running
    finally:
        await scheduler.clear_all_jobs()


@pytest.fixture
async def pizzeria(tmp_path: Path) -> AsyncIterator[SimpleNamespace]:
    """An application with the scheduler (SQLite under tmp_path) and the pizzeria's services."""
    builder = WebApplicationBuilder()
    builder.services.add_background_task_scheduler(store=sqlite_store(tmp_path), config=fast())
    kitchen, delivery = KitchenService(), DeliveryService()
    builder.services.add_singleton(KitchenService, singleton=kitchen)
    builder.services.add_singleton(DeliveryService, singleton=delivery)
    builder.services.add_singleton(PizzaOrderService, PizzaOrderService)
    app = builder.build()
    scheduler = app.services.get_required_service(BackgroundTaskScheduler)
    events: list[SchedulerEvent] = []
    scheduler.add_listener(events.append)
    async with app:
        yield SimpleNamespace(app=app, scheduler=scheduler, kitchen=kitchen, delivery=delivery, events=events)


async def test_pizza_order_service_schedules_two_tagged_reminders(pizzeria: SimpleNamespace) -> None:
    scheduler: BackgroundTaskScheduler = pizzeria.scheduler
    order_service = pizzeria.app.services.get_required_service(PizzaOrderService)
    assert order_service.scheduler is scheduler
    before = datetime.now(UTC)

    await order_service.schedule_order_reminders("order-7")

    reminders = {t.name: t for t in await scheduler.list_tasks(tag="reminder")}
    assert set(reminders) == {"order_preparation_reminder", "order_delivery_reminder"}
    prep, delivery = reminders["order_preparation_reminder"], reminders["order_delivery_reminder"]
    assert prep.tags == ("order", "reminder") and delivery.tags == ("delivery", "reminder")
    assert prep.args == ["order-7"] and delivery.args == ["order-7"]
    assert not prep.local and not delivery.local  # service methods: stored by reference
    assert prep.next_run_time is not None and delivery.next_run_time is not None
    assert abs((prep.next_run_time - before - timedelta(minutes=15)).total_seconds()) < 5
    assert abs((delivery.next_run_time - before - timedelta(minutes=45)).total_seconds()) < 5

    await scheduler.trigger_job_now(prep.id)
    await wait_for(lambda: pizzeria.kitchen.preparations == ["order-7"])
    await scheduler.trigger_job_now(delivery.id)
    await wait_for(lambda: pizzeria.delivery.pickups == ["order-7"])


async def test_order_task_scheduler_schedules_three_tasks_at_their_times(pizzeria: SimpleNamespace) -> None:
    scheduler: BackgroundTaskScheduler = pizzeria.scheduler
    handler = OrderTaskScheduler(scheduler)
    estimated_delivery = datetime.now(UTC) + timedelta(minutes=30, seconds=1)

    await handler.handle_async(OrderPlacedEvent("order-9", "customer-3", estimated_delivery))

    tasks = {t.name: t for t in await scheduler.list_tasks()}
    assert tasks["kitchen_preparation"].next_run_time == estimated_delivery - timedelta(minutes=30)
    assert tasks["delivery_dispatch"].next_run_time == estimated_delivery - timedelta(minutes=10)
    assert tasks["customer_notification"].next_run_time == estimated_delivery - timedelta(minutes=5)
    # The kitchen preparation is due in a second: it runs on its own.
    await wait_for(lambda: ("start_kitchen_preparation", ("order-9",)) in RECORDED)
    await scheduler.trigger_job_now(tasks["delivery_dispatch"].id)
    await wait_for(lambda: ("dispatch_delivery", ("order-9", "customer-3")) in RECORDED)


async def test_order_stream_processor_schedules_the_workflow(pizzeria: SimpleNamespace) -> None:
    scheduler: BackgroundTaskScheduler = pizzeria.scheduler
    processor = OrderStreamProcessor(scheduler)
    await processor.process_order_events()  # type: ignore[no-untyped-call]  # the seed's function: verbatim, unannotated
    before = datetime.now(UTC)

    await processor.order_stream.emit(SimpleNamespace(type="order_placed", order_id="o-5"))

    # delay 0: the inventory check runs right away (and, done, leaves the list).
    await wait_for(lambda: ("check_inventory", ("o-5",)) in RECORDED)
    workflow = {t.name: t for t in await scheduler.list_tasks(tag="o-5")}
    assert set(workflow) == {
        "kitchen_queue_o-5",
        "preparation_start_o-5",
        "quality_check_o-5",
        "delivery_ready_o-5",
    }
    assert all(t.tags == ("workflow", "o-5") for t in workflow.values())
    for name, minutes in (("kitchen_queue", 5), ("preparation_start", 15), ("delivery_ready", 35)):
        due = workflow[f"{name}_o-5"].next_run_time
        assert due is not None and abs((due - before - timedelta(minutes=minutes)).total_seconds()) < 5

    await processor.order_stream.emit(SimpleNamespace(type="order_cancelled", order_id="o-5"))
    assert await scheduler.list_tasks(tag="o-5") == []


@pytest.fixture
def declared_tasks() -> Iterator[Any]:
    """Import seed003_tasks (its @schedule_task functions), and undeclare them afterwards."""
    before = dict(DECLARED)
    name = "tests.e2e.seed003_tasks"
    module = importlib.reload(sys.modules[name]) if name in sys.modules else importlib.import_module(name)
    module.REORDERED.clear()
    yield module
    DECLARED.clear()
    DECLARED.update(before)


async def test_schedule_task_functions_are_stored_and_resolve_services(
    tmp_path: Path, declared_tasks: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    tasks = declared_tasks
    builder = WebApplicationBuilder()
    builder.services.add_background_task_scheduler(store=sqlite_store(tmp_path), config=fast())
    inventory = tasks.InventoryService()
    inventory.low = ["mozzarella", "basil"]
    orders = tasks.OrderService()
    orders.delayed = [tasks.Order("o-1", "c-1")]
    notifications = tasks.NotificationService()
    builder.services.add_singleton(tasks.InventoryService, singleton=inventory)
    builder.services.add_singleton(tasks.AnalyticsService, singleton=tasks.AnalyticsService())
    builder.services.add_singleton(tasks.OrderService, singleton=orders)
    builder.services.add_singleton(tasks.NotificationService, singleton=notifications)
    app = builder.build()
    scheduler = app.services.get_required_service(BackgroundTaskScheduler)
    async with app:
        stored = {t.name: t for t in await scheduler.list_tasks()}
        assert set(stored) == {"daily_inventory_check", "daily_sales_report", "hourly_order_monitoring"}
        assert stored["daily_inventory_check"].trigger_spec.get("hour") == "8"
        for info in stored.values():
            assert info.next_run_time is not None and info.next_run_time > datetime.now(UTC)

        await scheduler.trigger_job_now(stored["daily_inventory_check"].id)
        await wait_for(lambda: inventory.checked == 1)
        await wait_for(lambda: tasks.REORDERED == ["mozzarella", "basil"])
        await scheduler.trigger_job_now(stored["daily_sales_report"].id)
        await scheduler.trigger_job_now(stored["hourly_order_monitoring"].id)
        await wait_for(lambda: len(notifications.sent) == 2)
        assert orders.escalated == ["o-1"]
        assert ("delay", ("c-1", "o-1")) in notifications.sent
    out = capsys.readouterr().out
    assert "Daily inventory check completed: 2 items need reordering" in out
    assert "Daily sales report generated: 42 orders, $1234.5" in out


@pytest.mark.redis
@needs_redis_store
async def test_advanced_redis_config_runs_tasks(tmp_path: Path) -> None:
    from backbeat.stores.redis import RedisStore

    scheduler_config: SchedulerConfig = configure_advanced_scheduler()  # type: ignore[no-untyped-call]  # the seed's function: verbatim, unannotated
    redis_config = cast(RedisJobStoreConfig, scheduler_config.job_stores["redis"])
    redis_config.lock_prefix = f"e2e-seed003-{uuid.uuid4().hex[:10]}"  # per test

    scheduler = BackgroundTaskScheduler(config=scheduler_config)
    assert isinstance(scheduler.store, RedisStore)
    assert scheduler.engine_config.lease == timedelta(seconds=60)  # distributed_lock_timeout
    marker = tmp_path / "marker.txt"
    try:
        # stored before the engine starts: a started one may run the one-shot, and so remove it,
        # before its stored options are read
        task_id = await scheduler.schedule_immediate_task(
            "write_marker", seed003_jobs.write_marker, args=[str(marker), "threadpool"]
        )
        info = await scheduler.get_task_info(task_id)
        assert info is not None and not info.local
        assert (info.coalesce, info.max_instances, info.misfire_grace_time) == (False, 3, 300)
        await scheduler.start()
        await wait_for(lambda: marker.exists() and "threadpool" in marker.read_text())
        await scheduler.add_task(
            seed003_jobs.write_marker,
            "date",
            run_date=datetime.now(UTC),
            args=[str(marker), "processpool"],
            options={"executor": "processpool"},
        )
        await wait_for(lambda: "processpool" in marker.read_text(), timeout=20)
        pids = {line.split()[0]: int(line.split()[1]) for line in marker.read_text().splitlines()}
        assert pids["processpool"] != pids["threadpool"]  # ran in a child process
    finally:
        await scheduler.shutdown()
        await scheduler.clear_all_jobs()


async def test_pizza_order_executor_wraps_runs(tmp_path: Path) -> None:
    executor = PizzaOrderExecutor(2)
    scheduler = BackgroundTaskScheduler(
        store=sqlite_store(tmp_path), config=fast(), executors={"orders": executor}
    )
    results: dict[str, Any] = {}

    def on_event(event: SchedulerEvent) -> None:
        if event.kind in (EventKind.RUN_EXECUTED, EventKind.RUN_FAILED) and event.task_id:
            results[event.task_id] = (event.kind, event.result)

    scheduler.add_listener(on_event)
    async with scheduler:
        ok = await scheduler.add_task(
            seed003_jobs.prepare_order,
            "date",
            run_date=datetime.now(UTC),
            args=["o-1"],
            options={"executor": "orders"},
        )
        broken = await scheduler.add_task(
            seed003_jobs.failing_order,
            "date",
            run_date=datetime.now(UTC),
            args=["o-2"],
            options={"executor": "orders"},
        )
        plain = await scheduler.add_task(
            seed003_jobs.prepare_order, "date", run_date=datetime.now(UTC), args=["o-3"]
        )
        await wait_for(lambda: len(results) == 3)
    assert results[ok] == (EventKind.RUN_EXECUTED, {"status": "completed", "result": "prepared o-1"})
    assert results[broken] == (EventKind.RUN_EXECUTED, {"status": "failed", "error": "oven broken for o-2"})
    assert results[plain] == (EventKind.RUN_EXECUTED, "prepared o-3")  # the default executor
    assert executor.active_orders == set()
