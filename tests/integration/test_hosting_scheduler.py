"""The scheduler as a hosted service: in a FastAPI app's lifespan, and through the builder."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from backbeat import BackgroundTaskScheduler, WebApplicationBuilder, hosted_lifespan
from tests.integration import jobs
from tests.scheduling import SchedulerFactory, wait_for
from tests.unit.test_hosting import served


async def test_a_fastapi_endpoint_schedules_into_the_hosted_scheduler(
    make_scheduler: SchedulerFactory, sqlite_url: str, record_file: Path
) -> None:
    scheduler = make_scheduler(sqlite_url)
    app = FastAPI(lifespan=hosted_lifespan(scheduler))

    @app.post("/orders/{order_id}")
    async def place(order_id: str) -> dict[str, str]:
        task_id = await scheduler.schedule_immediate_task(
            "confirm", jobs.note, args=[str(record_file), order_id]
        )
        return {"task": task_id}

    async with served(app) as client:
        assert scheduler.running
        response = await client.post("/orders/A-1")
        assert response.status_code == 200
        await wait_for(lambda: len(jobs.read_records(record_file)) == 1)
        assert jobs.read_records(record_file)[0]["task_id"] == response.json()["task"]
    assert not scheduler.running


async def test_add_background_task_scheduler_registers_a_hosted_scheduler(
    sqlite_url: str, record_file: Path
) -> None:
    builder = WebApplicationBuilder()
    builder.services.add_background_task_scheduler(store=sqlite_url)
    app = builder.build()
    scheduler = app.services.get_required_service(BackgroundTaskScheduler)
    async with app:
        assert scheduler.running
        await scheduler.schedule_immediate_task("hello", jobs.note, args=[str(record_file)])
        await wait_for(lambda: len(jobs.read_records(record_file)) == 1)
    assert not scheduler.running
