"""The order tasks the worker runs. They are methods of a service: the store keeps a reference
(``method:examples.pizzeria.tasks:OrderTasks.confirm_order``) and the order's ids, and the
worker resolves ``OrderTasks`` from its service provider when a task is due."""

from __future__ import annotations

from examples.pizzeria.stand_ins import Couriers, Kitchen, SmsGateway


class OrderTasks:
    """What happens to an order over time: confirmation, kitchen, dispatch, notification."""

    def __init__(self, kitchen: Kitchen, sms: SmsGateway, couriers: Couriers) -> None:
        self.kitchen = kitchen
        self.sms = sms
        self.couriers = couriers

    async def confirm_order(self, order_id: str, customer_id: str) -> None:
        """Text the customer that the order was received (immediate)."""
        await self.sms.send(customer_id, f"Mario's got your order {order_id}!", order_id=order_id)

    async def send_preparation_reminder(self, order_id: str) -> None:
        """Remind the kitchen to prepare the order (delayed)."""
        await self.kitchen.tell("preparation_reminder", order_id)

    async def start_kitchen_preparation(self, order_id: str) -> None:
        """Start preparing, 30 minutes before delivery (at a time)."""
        await self.kitchen.tell("start_preparation", order_id)

    async def dispatch_delivery(self, order_id: str, customer_id: str) -> None:
        """Send a courier, 10 minutes before delivery (at a time)."""
        await self.couriers.dispatch(order_id, customer_id)

    async def notify_customer_ready(self, customer_id: str, order_id: str) -> None:
        """Tell the customer the pizza is nearly there, 5 minutes before delivery (at a time)."""
        await self.sms.send(customer_id, f"Your order {order_id} arrives in 5 minutes", order_id=order_id)

    async def workflow_step(self, step: str, order_id: str) -> None:
        """One step of the order workflow (inventory check, kitchen queue, ... delivery ready)."""
        await self.kitchen.tell(step, order_id)

    async def fulfill_order(self, order_id: str) -> None:
        """The payment went through: the order goes to the kitchen for good."""
        await self.kitchen.tell("fulfil", order_id)
