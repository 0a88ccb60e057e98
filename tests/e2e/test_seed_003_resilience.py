"""Seed 003's "Error Handling and Resilience" snippets, run on backbeat.

Only the ``from neuroglia.scheduling import`` lines differ: backbeat also exports the
``circuit_breaker`` and ``retry_policy`` decorators that the seed's class-level
``@circuit_breaker.apply`` / ``@retry_policy.apply`` lines name; they read the policies the
instance's ``__init__`` sets. The user's services (PaymentService, NotificationService) and
exceptions are stand-ins, named as such; methods the snippets call without showing are added
after the verbatim part, marked "not in the seed".
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from backbeat import (
    BackgroundTaskScheduler,
    CircuitBreakerPolicy,
    RetryPolicy,
    SchedulerConfig,
    ServiceCollection,
    TaskExecutionResult,  # noqa: F401 - imported by the seed's snippet
    TaskFailureHandler,
    circuit_breaker,
    get_service,
    retry_policy,
)
from tests.scheduling import wait_for

logger = logging.getLogger("seed003.resilience")

# ==================================================================================================
# Stand-ins for the user's services and exceptions
# ==================================================================================================


class PaymentServiceUnavailableError(Exception):
    """Stand-in: the user's payment gateway is down."""


class InventoryShortageError(Exception):
    """Stand-in: the user's inventory exception."""


class KitchenOverloadError(Exception):
    """Stand-in: the user's kitchen exception."""


class ChargeResult:
    def __init__(self, success: bool) -> None:
        self.success = success


class PaymentService:
    """Stand-in for the user's payment gateway: fails ``failures`` times, then answers ``outcome``."""

    def __init__(self) -> None:
        self.failures = 0
        self.outcome: str = "approved"
        self.charges: list[tuple[str, float]] = []

    async def charge_customer(self, order_id: str, amount: float) -> ChargeResult:
        self.charges.append((order_id, amount))
        if self.failures:
            self.failures -= 1
            raise ConnectionError("payment gateway timed out")
        if self.outcome == "unavailable":
            raise PaymentServiceUnavailableError("gateway in maintenance")
        return ChargeResult(self.outcome == "approved")


class NotificationService:
    """Stand-in for the user's notification service."""

    def __init__(self) -> None:
        self.alerts: list[tuple[str, dict[str, Any]]] = []

    async def send_critical_alert(self, message: str, details: dict[str, Any]) -> None:
        self.alerts.append((message, details))


# ==================================================================================================
# Seed 003, "Circuit Breaker Integration" (verbatim but for the import line)
# ==================================================================================================

# from neuroglia.scheduling import CircuitBreakerPolicy, RetryPolicy   (seed)
# from backbeat import CircuitBreakerPolicy, RetryPolicy, circuit_breaker, retry_policy   (above)


class ResilientOrderProcessor:
    def __init__(self, task_scheduler: BackgroundTaskScheduler):
        self.task_scheduler = task_scheduler

        # Configure circuit breaker for external services
        self.circuit_breaker = CircuitBreakerPolicy(
            failure_threshold=5, recovery_timeout=60, success_threshold=3
        )

        # Configure retry policy
        self.retry_policy = RetryPolicy(max_attempts=3, backoff_factor=2.0, max_delay=300)

    @circuit_breaker.apply
    @retry_policy.apply
    async def process_payment_task(self, order_id: str, amount: float):  # type: ignore[no-untyped-def]
        """Process payment with circuit breaker and retry policies."""
        try:
            payment_service = get_service(PaymentService)
            result = await payment_service.charge_customer(order_id, amount)  # type: ignore[union-attr]

            if result.success:
                # Schedule order fulfillment
                await self.task_scheduler.schedule_immediate_task(
                    "order_fulfillment", self.fulfill_order, args=[order_id]
                )
            else:
                # Schedule payment retry
                await self.task_scheduler.schedule_delayed_task(
                    "payment_retry", self.retry_payment, delay_minutes=5, args=[order_id, amount]
                )

        except PaymentServiceUnavailableError:
            # Schedule fallback payment processing
            await self.task_scheduler.schedule_delayed_task(
                "fallback_payment", self.process_fallback_payment, delay_minutes=10, args=[order_id, amount]
            )

    # -- not in the seed: the methods the snippet schedules -------------------------------------

    fulfilled: list[str] = []

    async def fulfill_order(self, order_id: str) -> None:
        ResilientOrderProcessor.fulfilled.append(order_id)

    async def retry_payment(self, order_id: str, amount: float) -> None:
        pass

    async def process_fallback_payment(self, order_id: str, amount: float) -> None:
        pass


# ==================================================================================================
# Seed 003, "Comprehensive Error Monitoring" (verbatim but for the import line)
# ==================================================================================================

# from neuroglia.scheduling import TaskExecutionResult, TaskFailureHandler   (seed)


class OrderTaskMonitor(TaskFailureHandler):
    def __init__(self, notification_service: NotificationService):
        self.notification_service = notification_service

    async def handle_task_failure(self, task_name: str, exception: Exception, context: dict):  # type: ignore[no-untyped-def, type-arg]
        """Handle task execution failures with comprehensive logging."""

        error_details = {
            "task_name": task_name,
            "error_type": type(exception).__name__,
            "error_message": str(exception),
            "execution_time": context.get("execution_time"),
            "retry_count": context.get("retry_count", 0),
        }

        # Log error details
        logger.error(f"Task execution failed: {task_name}", extra=error_details)

        # Critical task failure notifications
        if task_name.startswith("payment_") or task_name.startswith("order_"):
            await self.notification_service.send_critical_alert(
                f"Critical task failure: {task_name}", error_details
            )

        # Schedule recovery tasks based on failure type
        if isinstance(exception, InventoryShortageError):
            await self.schedule_inventory_reorder(context.get("order_id"))
        elif isinstance(exception, KitchenOverloadError):
            await self.schedule_order_delay_notification(context.get("order_id"))

    async def handle_task_success(self, task_name: str, result: any, context: dict):  # type: ignore[no-untyped-def, type-arg, valid-type]
        """Monitor successful task executions."""

        # Track task performance metrics
        execution_time = context.get("execution_time")
        if execution_time > 30:  # type: ignore[operator]  # Tasks taking longer than 30 seconds
            logger.warning(f"Slow task execution: {task_name} took {execution_time}s")

        # Update order status based on completed tasks
        if task_name.startswith("delivery_"):
            order_id = context.get("order_id")
            await self.update_order_status(order_id, "delivered")

    # -- not in the seed: the methods the snippet calls -----------------------------------------

    async def schedule_inventory_reorder(self, order_id: str | None) -> None:
        self.reorders.append(order_id)

    async def schedule_order_delay_notification(self, order_id: str | None) -> None:
        self.delays.append(order_id)

    async def update_order_status(self, order_id: str | None, status: str) -> None:
        self.statuses.append((order_id, status))

    reorders: list[str | None]
    delays: list[str | None]
    statuses: list[tuple[str | None, str]]


# ==================================================================================================
# Jobs the monitor test schedules (not in the seed)
# ==================================================================================================


async def order_prepare(order_id: str) -> None:
    raise KitchenOverloadError(f"no oven free for {order_id}")


async def delivery_complete(order_id: str) -> str:
    return f"delivered {order_id}"


# ==================================================================================================
# Tests
# ==================================================================================================


def fast() -> SchedulerConfig:
    return SchedulerConfig(poll_interval=0.2, shutdown_timeout=5.0)


async def test_resilient_order_processor_retries_the_payment_then_fulfils(tmp_path: Path) -> None:
    payments = PaymentService()
    payments.failures = 1
    scheduler = BackgroundTaskScheduler(store=f"sqlite:///{tmp_path}/seed.db", config=fast())
    processor = ResilientOrderProcessor(scheduler)
    services = ServiceCollection()
    services.add_singleton(PaymentService, singleton=payments)
    services.add_singleton(ResilientOrderProcessor, singleton=processor)
    scheduler.service_provider = services.build()
    ResilientOrderProcessor.fulfilled.clear()
    async with scheduler:
        task_id = await scheduler.schedule_immediate_task(
            "payment_o-1", processor.process_payment_task, args=["o-1", 23.5]
        )
        stored = await scheduler.store.get(task_id)
        assert stored is not None and stored.options.retry is not None
        assert stored.options.retry["max_attempts"] == 3
        assert stored.options.circuit_breaker is not None
        assert stored.options.circuit_breaker["failure_threshold"] == 5
        # the gateway times out once: the stored retry policy runs it again about a second later
        await wait_for(lambda: ResilientOrderProcessor.fulfilled == ["o-1"], timeout=15)
        assert payments.charges == [("o-1", 23.5), ("o-1", 23.5)]

        payments.outcome = "unavailable"
        await scheduler.schedule_immediate_task(
            "payment_o-2", processor.process_payment_task, args=["o-2", 9.0]
        )

        async def fallback_scheduled() -> bool:
            return any(t.name == "fallback_payment" for t in await scheduler.list_tasks())

        for _ in range(200):
            if await fallback_scheduled():
                break
            await _tick()
        assert await fallback_scheduled()
    assert (await scheduler.list_dead_letters()) == []


async def test_order_task_monitor_alerts_on_failures_and_tracks_deliveries(tmp_path: Path) -> None:
    notifications = NotificationService()
    monitor = OrderTaskMonitor(notifications)
    monitor.reorders, monitor.delays, monitor.statuses = [], [], []
    scheduler = BackgroundTaskScheduler(store=f"sqlite:///{tmp_path}/seed.db", config=fast())
    scheduler.add_failure_handler(monitor)
    async with scheduler:
        await scheduler.schedule_immediate_task("order_prepare", order_prepare, args=["o-5"])
        await scheduler.schedule_immediate_task("delivery_o-5", delivery_complete, kwargs={"order_id": "o-5"})
        await wait_for(lambda: bool(notifications.alerts) and bool(monitor.statuses))
    [(message, details)] = notifications.alerts
    assert message == "Critical task failure: order_prepare"
    assert details["error_type"] == "KitchenOverloadError" and details["retry_count"] == 0
    assert details["error_message"] == "no oven free for o-5"
    assert monitor.delays == ["o-5"], "context['order_id'] is the job's order_id argument"
    assert monitor.statuses == [("o-5", "delivered")]


async def _tick() -> None:
    import asyncio

    await asyncio.sleep(0.05)
