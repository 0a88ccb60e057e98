"""Payment processing with a retry policy and a circuit breaker (seed 003's
``ResilientOrderProcessor``).

The policies are set by ``__init__`` and named by the class-level decorators; when the web
process schedules ``process_payment_task`` they are stored with the task, so the worker applies
them durably: a failed attempt is retried later from the store (same run id, attempt + 1), and
the breaker's state is shared by every process through the store.
"""

from __future__ import annotations

from backbeat import (
    BackgroundTaskScheduler,
    CircuitBreakerPolicy,
    RetryPolicy,
    circuit_breaker,
    current_run,
    retry_policy,
)
from examples.pizzeria.settings import PizzeriaSettings
from examples.pizzeria.stand_ins import PaymentGateway, PaymentServiceUnavailableError, SmsGateway
from examples.pizzeria.tasks import OrderTasks

BREAKER = "payment-gateway"
"""The name of the gateway's circuit breaker, shared by every payment task."""


class PaymentProcessor:
    """Charges orders through the payment gateway, and schedules what follows."""

    def __init__(
        self,
        task_scheduler: BackgroundTaskScheduler,
        gateway: PaymentGateway,
        sms: SmsGateway,
        tasks: OrderTasks,
        settings: PizzeriaSettings,
    ) -> None:
        self.task_scheduler = task_scheduler
        self.gateway = gateway
        self.sms = sms
        self.tasks = tasks
        self.settings = settings
        self.circuit_breaker = CircuitBreakerPolicy(
            name=BREAKER, failure_threshold=5, recovery_timeout=settings.breaker_recovery, success_threshold=3
        )
        self.retry_policy = RetryPolicy(
            max_attempts=3, backoff_factor=2.0, max_delay=300, initial_delay=settings.retry_delay
        )

    @circuit_breaker.apply
    @retry_policy.apply
    async def process_payment_task(self, order_id: str, amount: float, card: str) -> None:
        """Charge the order; a gateway timeout raises, so the stored retry policy runs it again."""
        tags = ["order", order_id]
        try:
            result = await self.gateway.charge_customer(order_id, amount, card)
        except PaymentServiceUnavailableError:
            await self.task_scheduler.schedule_delayed_task(
                "fallback_payment",
                self.process_fallback_payment,
                delay_seconds=self.settings.minutes(10).total_seconds(),
                args=[order_id, amount],
                tags=tags,
            )
            return
        if result.success:
            if await self._cancelled_meanwhile():
                await self.gateway.refund(order_id, amount)
                return
            await self.task_scheduler.schedule_immediate_task(
                "order_fulfillment", self.tasks.fulfill_order, args=[order_id], tags=tags
            )
        else:
            await self.task_scheduler.schedule_delayed_task(
                "payment_retry",
                self.retry_payment,
                delay_seconds=self.settings.minutes(5).total_seconds(),
                args=[order_id, amount],
                tags=tags,
            )

    async def _cancelled_meanwhile(self) -> bool:
        """Whether this run's task was removed while it ran (the order was cancelled by tag):
        a one-shot task stays in the store until its run completes, unless removed."""
        task_id = current_run().task_id
        return await self.task_scheduler.get_task_info(task_id) is None

    async def retry_payment(self, order_id: str, amount: float) -> None:
        """The card was declined: ask the customer to pay at the door."""
        text = f"Your card was declined; please pay {amount:.2f} at the door"
        await self.sms.send(f"customer of {order_id}", text, order_id=order_id)

    async def process_fallback_payment(self, order_id: str, amount: float) -> None:
        """The gateway was in maintenance: take the payment on delivery instead."""
        text = f"We'll take the {amount:.2f} for {order_id} on delivery"
        await self.sms.send(f"customer of {order_id}", text, order_id=order_id)
