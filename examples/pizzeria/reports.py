"""The pizzeria's recurring tasks, declared with ``@schedule_task(cron=...)`` (seed 003).

Every scheduler that imports this module keeps them in its store under stable ids, so the web
process and the worker share one schedule, and a restart neither duplicates nor resets them.
Their crontab strings come from the environment (``PIZZERIA_*_CRON``, read at import).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TypeVar

from backbeat import BackgroundTaskScheduler, get_service, schedule_task
from examples.pizzeria.settings import PizzeriaSettings
from examples.pizzeria.stand_ins import Inventory, Pager, PaymentGateway

T = TypeVar("T")
SETTINGS = PizzeriaSettings()


def _service(service_type: type[T]) -> T:
    service = get_service(service_type)
    if service is None:
        raise LookupError(f"{service_type.__name__} is not registered")
    return service


@schedule_task(cron=SETTINGS.inventory_cron)  # daily at 8 AM
async def daily_inventory_check() -> None:
    """Check the ingredients; schedule a reorder for each one running low."""
    inventory = _service(Inventory)
    scheduler = _service(BackgroundTaskScheduler)
    low = await inventory.get_low_stock_ingredients()
    for ingredient in low:
        await scheduler.schedule_immediate_task(
            "ingredient_reorder", reorder_ingredient, args=[ingredient], tags=["inventory"]
        )
    await _service(Pager).send_report("inventory", {"low": low})


async def reorder_ingredient(ingredient: str) -> None:
    """Order more of one ingredient (scheduled by the inventory check)."""
    await _service(Inventory).reorder(ingredient)


@schedule_task(cron=SETTINGS.sales_report_cron)  # daily at 11 PM
async def daily_sales_report() -> None:
    """Sum today's settled charges and send the report to the manager."""
    today = datetime.now(UTC).date()
    charges = [
        c
        for c in _service(PaymentGateway).settled_charges()
        if datetime.fromtimestamp(c["at"], UTC).date() == today
    ]
    body = {"orders": len({c["order_id"] for c in charges}), "revenue": sum(c["amount"] for c in charges)}
    await _service(Pager).send_report("sales", body)


@schedule_task(cron=SETTINGS.monitoring_cron)  # every hour
async def hourly_order_monitoring() -> None:
    """Report the orders whose tasks are late by more than one business minute."""
    now = datetime.now(UTC)
    pending = await _service(BackgroundTaskScheduler).list_tasks(tag="order")
    late = sorted(
        {
            tag
            for task in pending
            if task.next_run_time is not None and (now - task.next_run_time) > SETTINGS.minutes(1)
            for tag in task.tags
            if tag.startswith("order-")
        }
    )
    await _service(Pager).send_report("monitoring", {"pending_tasks": len(pending), "late_orders": late})
