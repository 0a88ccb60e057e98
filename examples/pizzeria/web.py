"""The web process: a FastAPI app whose endpoints place, change and cancel orders.

Its scheduler is ``producer_only``: it writes tasks to the store and never runs them; the
worker does. ``python -m examples.pizzeria.web [--port 8000] [--store URL] ...``
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from fastapi import APIRouter, FastAPI, HTTPException
from pydantic import BaseModel, Field

from backbeat import BackgroundTaskScheduler, TaskInfo, TaskNotFoundError
from examples.pizzeria.cli import parse, settings_from
from examples.pizzeria.orders import Order, OrderService
from examples.pizzeria.payments import BREAKER
from examples.pizzeria.services import build_application
from examples.pizzeria.settings import PizzeriaSettings


class PlaceOrder(BaseModel):
    """The body of ``POST /orders``."""

    customer_id: str
    items: list[str] = Field(min_length=1)
    amount: float = Field(gt=0)
    card: str = "visa"
    delivery_in_minutes: float = Field(default=45, gt=0)


class ChangeDelivery(BaseModel):
    """The body of ``PATCH /orders/{order_id}``."""

    delivery_in_minutes: float = Field(gt=0)


def task_view(task: TaskInfo) -> dict[str, Any]:
    """A stored task as the API shows it."""
    return {
        "id": task.id,
        "name": task.name,
        "trigger": task.trigger,
        "next_run_time": task.next_run_time,
        "tags": list(task.tags),
        "runs": task.runs,
    }


def order_view(order: Order) -> dict[str, Any]:
    """An order as the API shows it."""
    return {
        "id": order.id,
        "customer_id": order.customer_id,
        "items": order.items,
        "amount": order.amount,
        "status": order.status,
        "estimated_delivery": order.estimated_delivery,
        "task_ids": order.task_ids,
    }


def create_app(settings: PizzeriaSettings | None = None) -> FastAPI:
    """The pizzeria's API; its lifespan starts and stops the (producer-only) scheduler."""
    application = build_application(settings or PizzeriaSettings(), producer_only=True)
    services = application.services
    api = FastAPI(title="Mario's pizzeria", lifespan=application.lifespan())
    api.include_router(order_routes(services.get_required_service(OrderService)))
    api.include_router(task_routes(services.get_required_service(BackgroundTaskScheduler)))
    return api


def order_routes(orders: OrderService) -> APIRouter:
    """Place, look at, change and cancel orders."""
    router = APIRouter(prefix="/orders")

    def find(order_id: str) -> Order:
        order = orders.book.get(order_id)
        if order is None:
            raise HTTPException(404, f"no order {order_id}")
        return order

    @router.post("", status_code=201)
    async def place_order(body: PlaceOrder) -> dict[str, Any]:
        order = await orders.place_order(
            body.customer_id, body.items, body.amount, body.card, body.delivery_in_minutes
        )
        return order_view(order)

    @router.get("/{order_id}")
    async def get_order(order_id: str) -> dict[str, Any]:
        order = find(order_id)
        pending = await orders.pending_tasks(order)
        return {**order_view(order), "pending_tasks": [task_view(t) for t in pending]}

    @router.patch("/{order_id}")
    async def change_delivery(order_id: str, body: ChangeDelivery) -> dict[str, Any]:
        order = find(order_id)
        moved = await orders.change_delivery(order, body.delivery_in_minutes)
        return {**order_view(order), "rescheduled": [task_view(t) for t in moved]}

    @router.delete("/{order_id}")
    async def cancel_order(order_id: str) -> dict[str, Any]:
        order = find(order_id)
        removed = await orders.cancel(order)
        return {**order_view(order), "removed_task_ids": removed}

    return router


def task_routes(scheduler: BackgroundTaskScheduler) -> APIRouter:
    """Look at the store: tasks, dead letters, the payment gateway's breaker; run a task now."""
    router = APIRouter()

    @router.get("/health")
    async def health() -> dict[str, Any]:
        return {"pid": os.getpid(), "store": type(scheduler.store).__name__, "running": scheduler.running}

    @router.get("/tasks")
    async def list_tasks(tag: str | None = None) -> list[dict[str, Any]]:
        return [task_view(t) for t in await scheduler.list_tasks(tag=tag)]

    @router.post("/tasks/{task_id}/run", status_code=202)
    async def run_task_now(task_id: str) -> dict[str, Any]:
        try:
            return {"run_id": await scheduler.trigger_job_now(task_id)}
        except TaskNotFoundError:
            raise HTTPException(404, f"no task {task_id}") from None

    @router.get("/dead-letters")
    async def dead_letters() -> list[dict[str, Any]]:
        return [
            {
                "id": d.id,
                "task_name": d.task.name if d.task else None,
                "error": d.error,
                "attempts": d.attempt,
            }
            for d in await scheduler.list_dead_letters()
        ]

    @router.get("/breakers/payment-gateway")
    async def payment_breaker() -> dict[str, Any]:
        state = await scheduler.circuit_breaker_state(BREAKER)
        return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in state.items()}

    return router


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point: serve the API with uvicorn."""
    import uvicorn

    args = parse("examples.pizzeria.web", "Mario's pizzeria: the web process", argv, port=8000)
    settings = settings_from(args)
    uvicorn.run(create_app(settings), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
