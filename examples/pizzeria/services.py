"""The application both processes build: the scheduler (a hosted service) and the services.

The web process builds it ``producer_only`` (it schedules, never runs); the worker builds the
same services with a scheduler that runs, so it can resolve every stored task's service.
"""

from __future__ import annotations

import importlib

from backbeat import BackgroundTaskScheduler, TaskFailureHandler, WebApplication, WebApplicationBuilder
from examples.pizzeria.monitor import OrderTaskMonitor
from examples.pizzeria.orders import OrderBook, OrderService
from examples.pizzeria.payments import PaymentProcessor
from examples.pizzeria.settings import PizzeriaSettings
from examples.pizzeria.stand_ins import (
    Couriers,
    Inventory,
    Kitchen,
    Pager,
    PaymentGateway,
    Recorder,
    SmsGateway,
)
from examples.pizzeria.tasks import OrderTasks


def build_application(settings: PizzeriaSettings, *, producer_only: bool) -> WebApplication:
    """The pizzeria's services over one store; start it with ``async with`` or its lifespan."""
    importlib.import_module("examples.pizzeria.reports")  # declares the @schedule_task crons
    builder = WebApplicationBuilder()
    BackgroundTaskScheduler.configure(builder, **settings.scheduler_args(producer_only=producer_only))
    services = builder.services
    services.add_singleton(PizzeriaSettings, singleton=settings)
    services.add_singleton(Recorder, singleton=Recorder(settings.record))
    for stand_in in (Kitchen, PaymentGateway, SmsGateway, Couriers, Inventory, Pager):
        services.add_singleton(stand_in)
    for service in (OrderTasks, PaymentProcessor, OrderBook, OrderService):
        services.add_singleton(service)
    services.add_singleton(TaskFailureHandler, OrderTaskMonitor)
    return builder.build()
