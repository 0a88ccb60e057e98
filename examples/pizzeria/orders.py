"""Orders: placing one schedules its tasks, changing its delivery time reschedules them,
cancelling it removes them all by its tag."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from backbeat import BackgroundTaskScheduler, TaskInfo, TaskNotFoundError
from examples.pizzeria.payments import PaymentProcessor
from examples.pizzeria.settings import PizzeriaSettings
from examples.pizzeria.tasks import OrderTasks

REMINDER_AFTER = 15
"""Business minutes after the order when the kitchen is reminded (seed 003)."""
BEFORE_DELIVERY = {"kitchen_preparation": 30, "delivery_dispatch": 10, "customer_notification": 5}
"""Tasks due a number of business minutes before the estimated delivery (seed 003)."""
WORKFLOW = (
    ("inventory_check", 0),
    ("kitchen_queue", 5),
    ("preparation_start", 15),
    ("quality_check", 25),
    ("delivery_ready", 35),
)
"""The order workflow of seed 003: step name and business minutes after the order."""


@dataclass(slots=True, kw_only=True)
class Order:
    """An order as the web process keeps it."""

    id: str
    customer_id: str
    items: list[str]
    amount: float
    card: str
    estimated_delivery: datetime
    status: str = "placed"
    task_ids: list[str] = field(default_factory=list)


class OrderBook:
    """Stand-in for the orders database: the web process's memory (a real app has a database)."""

    def __init__(self) -> None:
        self.orders: dict[str, Order] = {}

    def get(self, order_id: str) -> Order | None:
        """The order, or ``None``."""
        return self.orders.get(order_id)


class OrderService:
    """Seed 003's ``PizzaOrderService`` and ``OrderTaskScheduler``: the scheduling side of an order.

    It only schedules; the tasks it schedules are methods of services the worker resolves
    (stored by reference, with the order's ids as arguments), and they run in the worker.
    """

    def __init__(
        self,
        scheduler: BackgroundTaskScheduler,
        tasks: OrderTasks,
        payments: PaymentProcessor,
        book: OrderBook,
        settings: PizzeriaSettings,
    ) -> None:
        self.scheduler = scheduler
        self.tasks = tasks
        self.payments = payments
        self.book = book
        self.settings = settings

    async def place_order(
        self, customer_id: str, items: list[str], amount: float, card: str, delivery_in_minutes: float
    ) -> Order:
        """Store the order and schedule its confirmation, payment, reminders and workflow."""
        now = datetime.now(UTC)
        order = Order(
            id=f"order-{uuid.uuid4().hex[:8]}",
            customer_id=customer_id,
            items=items,
            amount=amount,
            card=card,
            estimated_delivery=now + self.settings.minutes(delivery_in_minutes),
        )
        self.book.orders[order.id] = order
        tags = ["order", order.id]
        schedule = self.scheduler
        ids = [
            await schedule.schedule_immediate_task(
                "order_confirmation", self.tasks.confirm_order, args=[order.id, customer_id], tags=tags
            ),
            await schedule.schedule_immediate_task(
                "payment_processing",
                self.payments.process_payment_task,
                args=[order.id, amount, card],
                tags=[*tags, "payment"],
            ),
            await schedule.schedule_delayed_task(
                "order_preparation_reminder",
                self.tasks.send_preparation_reminder,
                delay_seconds=self.settings.minutes(REMINDER_AFTER).total_seconds(),
                args=[order.id],
                tags=[*tags, "reminder"],
            ),
        ]
        timed: dict[str, tuple[Callable[..., Awaitable[None]], list[str]]] = {
            "kitchen_preparation": (self.tasks.start_kitchen_preparation, [order.id]),
            "delivery_dispatch": (self.tasks.dispatch_delivery, [order.id, customer_id]),
            "customer_notification": (self.tasks.notify_customer_ready, [customer_id, order.id]),
        }
        for name, (func, args) in timed.items():
            when = self._before_delivery(order.estimated_delivery, name)
            ids.append(await schedule.schedule_at(name, func, scheduled_time=when, args=args, tags=tags))
        for step, after in WORKFLOW:
            ids.append(
                await schedule.schedule_delayed_task(
                    f"{step}_{order.id}",
                    self.tasks.workflow_step,
                    delay_seconds=self.settings.minutes(after).total_seconds(),
                    args=[step, order.id],
                    tags=["workflow", *tags],
                )
            )
        order.task_ids = ids
        return order

    async def change_delivery(self, order: Order, delivery_in_minutes: float) -> list[TaskInfo]:
        """Move the estimated delivery; the tasks tied to it are rescheduled. Returns them."""
        order.estimated_delivery = datetime.now(UTC) + self.settings.minutes(delivery_in_minutes)
        order.status = "modified"
        moved: list[TaskInfo] = []
        for task in await self.scheduler.list_tasks(tag=order.id):
            if task.name in BEFORE_DELIVERY:
                when = self._before_delivery(order.estimated_delivery, task.name)
                # it may have run (and left the store) since we listed it: nothing to move then
                with contextlib.suppress(TaskNotFoundError):
                    moved.append(await self.scheduler.reschedule(task.id, "date", run_date=when))
        return moved

    async def cancel(self, order: Order) -> list[str]:
        """Remove every task of the order that has not run yet; returns their ids."""
        order.status = "cancelled"
        return await self.scheduler.cancel_tasks_by_tag(order.id)

    async def pending_tasks(self, order: Order) -> list[TaskInfo]:
        """The order's tasks still in the store."""
        return list(await self.scheduler.list_tasks(tag=order.id))

    def _before_delivery(self, delivery: datetime, task_name: str) -> datetime:
        return max(datetime.now(UTC), delivery - self.settings.minutes(BEFORE_DELIVERY[task_name]))
