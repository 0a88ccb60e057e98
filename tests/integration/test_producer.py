"""A producer-only scheduler (``role="producer"``): it stores tasks for workers elsewhere, with or
without ``start()``, on the real stores."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest

from backbeat import BackgroundTaskScheduler, TaskExistsError
from backbeat.model.records import Task
from tests.integration import jobs
from tests.scheduling import SchedulerFactory, wait_for


@pytest.mark.parametrize("started", [False, True], ids=["never-started", "started"])
async def test_a_producer_stores_concurrent_adds_that_a_worker_runs(
    make_scheduler: SchedulerFactory, store_url: str, record_file: Path, started: bool
) -> None:
    producer = make_scheduler(store_url, role="producer")
    if started:
        await producer.start_async()
    adds = (
        producer.schedule_immediate_task(f"job {i}", jobs.note, args=[str(record_file), f"job {i}"])
        for i in range(100)
    )
    ids = await asyncio.gather(*adds)
    assert len(set(ids)) == 100
    assert producer._router.engine is None  # it claims nothing: the tasks wait for a worker
    assert len(await producer.list_tasks()) == 100

    worker = make_scheduler(store_url)
    await worker.start_async()
    await wait_for(lambda: record_file.exists() and len(jobs.read_records(record_file)) == 100, timeout=30)
    labels = sorted(record["label"] for record in jobs.read_records(record_file))
    assert labels == sorted(f"job {i}" for i in range(100))

    await worker.shutdown()
    await producer.shutdown()
    assert not producer.running


async def test_concurrent_adds_are_coalesced_and_a_taken_id_fails_only_its_caller(
    make_scheduler: SchedulerFactory, store_url: str, record_file: Path
) -> None:
    producer = make_scheduler(store_url, role="producer")
    await producer.schedule_delayed_task(
        "first", jobs.note, delay_minutes=5, args=[str(record_file)], id="taken"
    )
    calls = 0
    store_add = producer.store.add

    async def counting_add(tasks: Sequence[Task], *, replace: bool = False) -> None:
        nonlocal calls
        calls += 1
        await store_add(tasks, replace=replace)

    producer.store.add = counting_add  # type: ignore[method-assign]  # count the store calls
    ids = [f"t{i}" for i in range(199)] + ["taken"]
    adds = (
        producer.schedule_delayed_task(i, jobs.note, delay_minutes=5, args=[str(record_file)], id=i)
        for i in ids
    )
    results = await asyncio.gather(*adds, return_exceptions=True)

    assert results[:-1] == ids[:-1]
    assert isinstance(results[-1], TaskExistsError) and results[-1].task_ids == ["taken"]
    stored = {info.id: info.name for info in await producer.list_tasks()}
    assert len(stored) == 200 and stored["taken"] == "first"  # the stored one is untouched
    assert calls <= 1 + 200 // 100, f"{calls} store calls for 200 concurrent adds"
    await producer.shutdown()


async def test_a_task_the_store_cannot_write_fails_only_its_caller_among_coalesced_adds(
    make_scheduler: SchedulerFactory, store_url: str, record_file: Path
) -> None:
    # a name no UTF-8 can write passes the API's checks and fails the store's encoding: before,
    # the whole batch it was coalesced into failed with it
    producer = make_scheduler(store_url, role="producer")
    names = [f"n{i}" for i in range(50)]
    names[20] = "bad \ud800"
    adds = (
        producer.schedule_delayed_task(name, jobs.note, delay_minutes=5, args=[str(record_file)], id=f"t{i}")
        for i, name in enumerate(names)
    )
    results = await asyncio.gather(*adds, return_exceptions=True)

    failed = [i for i, result in enumerate(results) if isinstance(result, BaseException)]
    assert failed == [20], results[20]
    assert sorted(info.name for info in await producer.list_tasks()) == sorted(names[:20] + names[21:])
    await producer.shutdown()


def test_a_producer_serves_one_event_loop_after_another(tmp_path: Path, record_file: Path) -> None:
    producer = BackgroundTaskScheduler(store=f"sqlite:///{tmp_path / 'loops.db'}", role="producer")

    async def three_adds() -> list[str]:
        adds = (
            producer.schedule_delayed_task("t", jobs.note, delay_minutes=5, args=[str(record_file)])
            for _ in range(3)
        )
        ids = await asyncio.gather(*adds)
        await producer.shutdown()
        return list(ids)

    assert len(asyncio.run(three_adds()) + asyncio.run(three_adds())) == 6
