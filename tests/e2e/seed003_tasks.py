"""Seed 003's ``@schedule_task`` functions, verbatim but for the imports (and mypy's ignores),
with stand-in services.

Importing this module declares three recurring tasks for *every* scheduler that starts
afterwards; ``test_seed_003`` imports it only inside a fixture that removes them again.
The services (inventory, analytics, notifications, orders) are the user's: stand-ins here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from backbeat import get_service, schedule_task

# --- stand-ins for the user's services (not scheduler features) --------------------------------


class InventoryService:
    """Stand-in: ingredient stock levels."""

    def __init__(self) -> None:
        self.low: list[str] = []
        self.checked = 0

    async def get_low_stock_ingredients(self) -> list[str]:
        self.checked += 1
        return list(self.low)


@dataclass
class DailyReport:
    day: date
    total_orders: int
    total_revenue: float


class AnalyticsService:
    """Stand-in: builds the daily sales report."""

    async def generate_daily_report(self, day: date) -> DailyReport:
        return DailyReport(day, total_orders=42, total_revenue=1234.5)


@dataclass
class Order:
    id: str
    customer_id: str


class OrderService:
    """Stand-in: orders, some of them delayed."""

    def __init__(self) -> None:
        self.delayed: list[Order] = []
        self.escalated: list[str] = []

    async def get_delayed_orders(self) -> list[Order]:
        return list(self.delayed)

    async def escalate_delayed_order(self, order_id: str) -> None:
        self.escalated.append(order_id)


@dataclass
class NotificationService:
    """Stand-in: what would be sent."""

    sent: list[tuple[str, Any]] = field(default_factory=list)

    async def send_sales_report(self, report: DailyReport) -> None:
        self.sent.append(("sales_report", report))

    async def send_delay_notification(self, customer_id: str, order_id: str) -> None:
        self.sent.append(("delay", (customer_id, order_id)))


REORDERED: list[str] = []


async def schedule_ingredient_reorder(ingredient: str) -> None:
    """Stand-in for the user's reorder helper."""
    REORDERED.append(ingredient)


# --- seed 003, "Daily Operations" ---------------------------------------------------------------


@schedule_task(cron="0 8 * * *")  # Daily at 8 AM
async def daily_inventory_check():  # type: ignore[no-untyped-def]
    """Check pizza ingredient inventory daily."""
    inventory_service = get_service(InventoryService)

    # Check ingredient levels
    low_ingredients = await inventory_service.get_low_stock_ingredients()  # type: ignore[union-attr]

    if low_ingredients:
        # Schedule reorder tasks
        for ingredient in low_ingredients:
            await schedule_ingredient_reorder(ingredient)

    print(f"📊 Daily inventory check completed: {len(low_ingredients)} items need reordering")


@schedule_task(cron="0 23 * * *")  # Daily at 11 PM
async def daily_sales_report():  # type: ignore[no-untyped-def]
    """Generate daily sales report."""
    analytics_service = get_service(AnalyticsService)

    today = datetime.now().date()
    report = await analytics_service.generate_daily_report(today)  # type: ignore[union-attr]

    # Send report to management
    notification_service = get_service(NotificationService)
    await notification_service.send_sales_report(report)  # type: ignore[union-attr]

    print(f"📈 Daily sales report generated: {report.total_orders} orders, ${report.total_revenue}")


# --- seed 003, "Hourly Monitoring" --------------------------------------------------------------


@schedule_task(cron="0 * * * *")  # Every hour
async def hourly_order_monitoring():  # type: ignore[no-untyped-def]
    """Monitor order processing efficiency."""
    order_service = get_service(OrderService)

    # Check for delayed orders
    delayed_orders = await order_service.get_delayed_orders()  # type: ignore[union-attr]

    for order in delayed_orders:
        # Escalate delayed orders
        await order_service.escalate_delayed_order(order.id)  # type: ignore[union-attr]

        # Notify customer
        notification_service = get_service(NotificationService)
        await notification_service.send_delay_notification(order.customer_id, order.id)  # type: ignore[union-attr]

    print(f"🔍 Hourly monitoring: {len(delayed_orders)} delayed orders processed")
