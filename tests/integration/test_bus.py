"""The bus: descriptors before start, awaited ids and errors, job classes with injected services."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from backbeat import (
    BackgroundTasksBus,
    EncodingError,
    RecurrentBackgroundJob,
    RecurrentTaskDescriptor,
    ScheduledBackgroundJob,
    ScheduledTaskDescriptor,
    ServiceCollection,
    UnknownJobError,
    backgroundjob,
    current_run,
)
from tests.scheduling import SchedulerFactory, wait_for


class Ledger:
    """A service the jobs get through ``configure``; never stored."""

    def __init__(self) -> None:
        self.entries: list[tuple[str, Any]] = []


@backgroundjob(task_type="recurrent")
class TickJob(RecurrentBackgroundJob):
    counter_id: str

    def configure(self, service_provider: Any = None, **kwargs: Any) -> None:
        self.ledger = service_provider.get_required_service(Ledger)

    async def run_every(self, *args: Any, **kwargs: Any) -> None:
        self.ledger.entries.append(("tick", kwargs["counter_id"]))


@backgroundjob(task_type="scheduled")
class ReminderJob(ScheduledBackgroundJob):
    order_id: str

    def configure(self, service_provider: Any = None, **kwargs: Any) -> None:
        self.ledger = service_provider.get_required_service(Ledger)

    async def run_at(self, *args: Any, **kwargs: Any) -> None:
        self.ledger.entries.append(("remind", (self.order_id, current_run().attempt)))


async def test_descriptors_sent_before_start_run_after_start(
    make_scheduler: SchedulerFactory, sqlite_url: str
) -> None:
    services = ServiceCollection()
    services.add_singleton(Ledger)
    provider = services.build()
    bus = BackgroundTasksBus()
    scheduler = make_scheduler(sqlite_url, background_task_bus=bus, service_provider=provider)
    scheduler.options.register_task_type("TickJob", TickJob)
    scheduler.options.register_task_type("ReminderJob", ReminderJob)
    early = bus.schedule_task(
        RecurrentTaskDescriptor(id="tick", name="TickJob", data={"counter_id": "c1"}, interval=0.2)
    )
    bus.schedule_task(
        ScheduledTaskDescriptor(
            id="remind",
            name="ReminderJob",
            data={"order_id": "A-1"},
            scheduled_at=datetime.now(UTC) + timedelta(seconds=0.2),
        )
    )
    assert not early.done
    await scheduler.start()
    assert await early == "tick"
    ledger = provider.get_required_service(Ledger)
    await wait_for(
        lambda: ("remind", ("A-1", 1)) in ledger.entries and ledger.entries.count(("tick", "c1")) >= 2
    )
    stored = await scheduler.get_task_info("tick")
    assert stored is not None and stored.data == {"counter_id": "c1"}  # business data only, no Ledger


async def test_bad_descriptors_give_clear_errors_and_store_nothing(
    make_scheduler: SchedulerFactory, sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    bus = BackgroundTasksBus()
    scheduler = make_scheduler(sqlite_url, background_task_bus=bus)
    scheduler.options.register_task_type("TickJob", TickJob)
    await scheduler.start()
    with pytest.raises(UnknownJobError, match=r"'NoSuchJob'.*registered: TickJob"):
        await bus.schedule_task_async(RecurrentTaskDescriptor(id="x", name="NoSuchJob", data={}, interval=5))
    with pytest.raises(EncodingError, match=r"TickJob\.data\['lock'\]"):
        await bus.schedule_task(
            RecurrentTaskDescriptor(id="y", name="TickJob", data={"lock": asyncio.Lock()}, interval=5)
        )
    bus.schedule_task(RecurrentTaskDescriptor(id="z", name="Missing", data={}, interval=5))  # fire-and-forget
    await wait_for(lambda: "scheduling z (Missing) failed" in caplog.text)
    assert await scheduler.list_tasks() == []
