"""backbeat's demo: Mario's pizzeria on the embedded SQLite store.

Orders are placed; each schedules reminders (delayed, at a time, immediate) through the
scheduler, a recurring oven check runs through the bus, one order is cancelled by tag, and
the demo prints what fires until it ends by itself (about 15 seconds).

Run it with ``scripts/demo`` (or ``python -m examples.demo``).
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from backbeat import (
    BackgroundTasksBus,
    BackgroundTaskScheduler,
    RecurrentBackgroundJob,
    RecurrentTaskDescriptor,
    ScheduledBackgroundJob,
    ScheduledTaskDescriptor,
    ServiceCollection,
    ServiceProviderBase,
    backgroundjob,
    current_run,
)

STARTED = time.monotonic()


def say(message: str) -> None:
    print(f"[{time.monotonic() - STARTED:5.1f}s] {message}", flush=True)


class KitchenService:
    """Stand-in for the real kitchen: remembers what it was told."""

    def __init__(self) -> None:
        self.notes: list[str] = []

    async def notify_preparation_due(self, order_id: str) -> None:
        self.notes.append(f"prepare {order_id}")


class PizzaOrderService:
    """Seed 003's order service: its methods are stored by reference and resolved when they run."""

    def __init__(self, service_provider: ServiceProviderBase) -> None:
        self.service_provider = service_provider
        self.scheduler = service_provider.get_required_service(BackgroundTaskScheduler)

    async def schedule_order_reminders(self, order_id: str) -> None:
        await self.scheduler.schedule_delayed_task(
            "order_preparation_reminder",
            self.send_preparation_reminder,
            delay_seconds=2,
            args=[order_id],
            tags=["order", "reminder", order_id],
        )
        await self.scheduler.schedule_at(
            "delivery_dispatch",
            self.dispatch_delivery,
            scheduled_time=datetime.now(UTC) + timedelta(seconds=4),
            args=[order_id],
            tags=[order_id],
        )
        await self.scheduler.schedule_immediate_task(
            "order_confirmation",
            self.confirm_order,
            args=[order_id],
            tags=[order_id],
        )

    async def confirm_order(self, order_id: str) -> None:
        say(f"✅ order {order_id} confirmed (run {current_run().run_id.split('@')[0][:8]}…)")

    async def send_preparation_reminder(self, order_id: str) -> None:
        kitchen = self.service_provider.get_required_service(KitchenService)
        await kitchen.notify_preparation_due(order_id)
        say(f"🍕 kitchen reminder: start preparing order {order_id}")

    async def dispatch_delivery(self, order_id: str) -> None:
        say(f"🚚 delivery dispatched for order {order_id}")


@backgroundjob(task_type="recurrent")
class OvenCheckJob(RecurrentBackgroundJob):
    """A recurring job sent through the bus; only ``oven_id`` is stored."""

    def __init__(self, oven_id: str) -> None:
        self.oven_id = oven_id

    def configure(self, service_provider: Any = None, **kwargs: Any) -> None:
        self.kitchen = service_provider.get_required_service(KitchenService) if service_provider else None

    async def run_every(self, *args: Any, **kwargs: Any) -> None:
        say(f"🔥 oven {self.oven_id} checked (attempt {current_run().attempt})")


@backgroundjob(task_type="scheduled")
class ClosingTimeJob(ScheduledBackgroundJob):
    """A one-shot job: announces closing time."""

    shop: str

    async def run_at(self, *args: Any, **kwargs: Any) -> None:
        say(f"🔔 {self.shop} is closing")


async def main(db_path: Path) -> None:
    services = ServiceCollection()
    services.add_singleton(KitchenService)
    services.add_singleton(PizzaOrderService)
    bus = BackgroundTasksBus()
    services.add_singleton(BackgroundTasksBus, singleton=bus)
    services.add_singleton(
        BackgroundTaskScheduler,
        implementation_factory=lambda provider: BackgroundTaskScheduler(
            background_task_bus=bus,
            store=f"sqlite:///{db_path}",
            service_provider=provider,
        ),
    )
    provider = services.build()
    scheduler = provider.get_required_service(BackgroundTaskScheduler)
    scheduler.options.register_task_type("OvenCheckJob", OvenCheckJob)
    scheduler.options.register_task_type("ClosingTimeJob", ClosingTimeJob)

    # Sent before the scheduler starts: kept until it does, never lost.
    bus.schedule_task(
        RecurrentTaskDescriptor(id="oven-1", name="OvenCheckJob", data={"oven_id": "north"}, interval=3)
    )
    await scheduler.start()
    say(f"scheduler started on {db_path}")

    orders = provider.get_required_service(PizzaOrderService)
    for order_id in ("A-100", "B-200", "C-300"):
        await orders.schedule_order_reminders(order_id)
        say(f"order {order_id} placed")
    cancelled = await scheduler.cancel_tasks_by_tag("B-200")
    say(f"order B-200 cancelled: {len(cancelled)} of its tasks removed")
    closing = await bus.schedule_task(
        ScheduledTaskDescriptor(
            id="closing",
            name="ClosingTimeJob",
            data={"shop": "Mario's"},
            scheduled_at=datetime.now(UTC) + timedelta(seconds=9),
        )
    )
    say(f"closing time scheduled as task {closing}")

    await asyncio.sleep(10)
    say("tasks still stored:")
    for task in await scheduler.list_tasks():
        say(f"  {task.id[:24]:<24} {task.name:<28} next {task.next_run_time:%H:%M:%S}  runs={task.runs}")
    kitchen = provider.get_required_service(KitchenService)
    say(f"kitchen notes: {kitchen.notes}")
    await scheduler.clear_all_jobs()
    await scheduler.shutdown()
    say("scheduler stopped; demo over")


if __name__ == "__main__":
    with tempfile.TemporaryDirectory(prefix="backbeat-demo-") as tmp:
        path = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tmp) / "pizzeria.db"
        asyncio.run(main(path))
