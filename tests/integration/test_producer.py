"""A producer-only scheduler (``role="producer"``): it stores tasks for workers elsewhere, with or
without ``start()``, on the real stores."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from backbeat import BackgroundTaskScheduler, EventKind, TaskExistsError
from backbeat.model import stored_text
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
    # the lone first add, the others as two batches in flight at once, the one holding the taken
    # id sent again without it
    assert calls <= 4, f"{calls} store calls for 200 concurrent adds"
    await producer.shutdown()


@pytest.mark.parametrize(
    ("field", "bad", "message"),
    [
        ("name", "bad \ud800", "task name 'bad \\ud800' holds a lone surrogate"),
        ("id", "x\x00y", "task id 'x\\x00y' holds a NUL character"),
        ("tags", ["ok", "x\x00"], "tag 'x\\x00' holds a NUL character"),
        pytest.param(
            "id",
            "é" * 513,
            f"task id {'é' * 40!r}... is 1,026 bytes long in UTF-8, past the 1,024",
            id="long-id",
        ),
        pytest.param(
            "tags",
            ["ok", "t" * 1025],
            f"tag {'t' * 40!r}... is 1,025 bytes long in UTF-8, past the 1,024",
            id="long-tag",
        ),
    ],
)
async def test_an_id_name_or_tag_no_store_can_write_is_refused_at_call_time_failing_only_its_add(
    make_scheduler: SchedulerFactory, store_url: str, record_file: Path, field: str, bad: Any, message: str
) -> None:
    # before: a lone surrogate failed the whole batch the add was coalesced into, in the store's
    # JSON writer; a NUL was refused by PostgreSQL, and kept by SQLite in a task that never ran
    producer = make_scheduler(store_url, role="producer")
    fields: list[dict[str, Any]] = [{"name": f"n{i}", "id": f"t{i}", "tags": []} for i in range(20)]
    fields[7][field] = bad
    adds = (
        producer.schedule_delayed_task(
            f["name"], jobs.note, delay_minutes=5, args=[str(record_file)], id=f["id"], tags=f["tags"]
        )
        for f in fields
    )
    results = await asyncio.gather(*adds, return_exceptions=True)

    assert [i for i, result in enumerate(results) if isinstance(result, BaseException)] == [7]
    assert isinstance(results[7], ValueError) and message in str(results[7])
    assert len(await producer.list_tasks()) == 19
    await producer.shutdown()


async def test_an_id_name_and_tags_of_the_most_bytes_allowed_are_stored_and_read_on_every_store(
    make_scheduler: SchedulerFactory, store_url: str, record_file: Path
) -> None:
    longest = stored_text.MAX_TEXT_BYTES
    task_id, name = secrets.token_hex(longest // 2), "n" * (longest - 2) + "é"
    tags = ["a" * longest, "b" * longest]
    producer = make_scheduler(store_url, role="producer")
    added = await producer.schedule_delayed_task(
        name, jobs.note, delay_minutes=5, args=[str(record_file)], id=task_id, tags=tags
    )
    [info] = (await producer.list_tasks_page(tag=tags[1])).tasks
    assert (added, info.id, info.name, sorted(info.tags)) == (task_id, task_id, name, tags)
    await producer.shutdown()


async def test_a_task_stored_with_longer_text_before_the_limit_stays_usable_on_every_store(
    make_scheduler: SchedulerFactory, store_url: str, record_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Redis and SQLite kept any length before the limit (PostgreSQL up to ~2.7 KB an index entry):
    # the limit is checked when a task is added, never when a stored one is read or changed
    longer = stored_text.MAX_TEXT_BYTES + 100
    task_id, name, tag = "i" * longer, "n" * longer, "t" * longer
    producer = make_scheduler(store_url, role="producer")
    with monkeypatch.context() as before_the_limit:
        before_the_limit.setattr(stored_text, "MAX_TEXT_BYTES", 10**6)
        await producer.schedule_delayed_task(
            name, jobs.note, delay_minutes=5, args=[str(record_file)], id=task_id, tags=[tag]
        )

    [info] = (await producer.list_tasks_page(tag=tag)).tasks
    assert (info.id, info.name, info.tags) == (task_id, name, (tag,))
    assert (await producer.pause_task(task_id)).paused
    assert not (await producer.resume_task(task_id)).paused
    with pytest.raises(ValueError, match="is 1,124 bytes long in UTF-8, past the 1,024"):
        await producer.schedule_delayed_task(
            "n", jobs.note, delay_minutes=5, args=[str(record_file)], id=task_id
        )
    assert await producer.remove_task(task_id)
    assert await producer.get_task_info(task_id) is None
    await producer.shutdown()


async def test_an_add_the_store_refuses_fails_only_its_caller_among_concurrent_adds(
    make_scheduler: SchedulerFactory, store_url: str, record_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An id PostgreSQL cannot index (past the 2,704 bytes of a btree row, even compressed), let
    # through the call-time checks here, is refused by the store: the coalescer sends its batch
    # again one add at a time. SQLite and Redis store it.
    monkeypatch.setattr(stored_text, "MAX_TEXT_BYTES", 10**6)
    producer = make_scheduler(store_url, role="producer")
    long_id = secrets.token_urlsafe(6000)
    ids = [f"t{i}" for i in range(20)]
    ids[7] = long_id
    adds = (
        producer.schedule_delayed_task(f"n{i}", jobs.note, delay_minutes=5, args=[str(record_file)], id=key)
        for i, key in enumerate(ids)
    )
    results = await asyncio.gather(*adds, return_exceptions=True)

    failed = [i for i, result in enumerate(results) if isinstance(result, BaseException)]
    assert failed == ([7] if store_url.startswith("postgresql") else []), results[7]
    assert len(await producer.list_tasks()) == 20 - len(failed)
    await producer.shutdown()


@pytest.mark.parametrize("started", [False, True], ids=["never-started", "started"])
async def test_each_stored_add_is_announced_and_wakes_the_engine_once_and_no_refused_one_is(
    make_scheduler: SchedulerFactory, store_url: str, record_file: Path, started: bool
) -> None:
    # TASK_ADDED and the engine's wake-up come from the coalescer's 'stored' hook on its lone and
    # batch paths, and from the router for add_tasks: once per store call that stored its tasks
    scheduler = make_scheduler(store_url, role="worker" if started else "producer")
    if started:
        await scheduler.start_async()
    announced: list[str | None] = []
    scheduler.add_listener(lambda event: announced.append(event.task_id), [EventKind.TASK_ADDED])
    wakes = 0
    engine = scheduler._router.engine
    if engine is not None:
        notify = engine.notify

        def counting_notify(due: datetime | None = None) -> None:
            nonlocal wakes
            wakes += 1
            notify(due)

        engine.notify = counting_notify  # type: ignore[method-assign]  # count the wake-ups
    stored_calls = 0
    store_add = scheduler.store.add

    async def counting_add(tasks: Sequence[Task], *, replace: bool = False) -> None:
        nonlocal stored_calls
        await store_add(tasks, replace=replace)
        stored_calls += 1

    scheduler.store.add = counting_add  # type: ignore[method-assign]  # count the calls that stored
    args = [str(record_file)]
    # a lone add (opening a never-started store), a lone add refused, then concurrent adds: a lone
    # one and batches, t5 added twice, the batch holding "first" refused and sent again without it
    await scheduler.schedule_delayed_task("first", jobs.note, 5, args=args, id="first")
    with pytest.raises(TaskExistsError):
        await scheduler.schedule_delayed_task("again", jobs.note, 5, args=args, id="first")
    ids = [f"t{i}" for i in range(40)] + ["t5", "first"]
    results = await asyncio.gather(
        *(scheduler.schedule_delayed_task(i, jobs.note, 5, args=args, id=i) for i in ids),
        return_exceptions=True,
    )
    assert [i for i, result in enumerate(results) if isinstance(result, TaskExistsError)] == [40, 41]
    when = datetime.now(UTC) + timedelta(minutes=5)
    requests = [
        {"func": jobs.note, "trigger": "date", "run_date": when, "args": args, "id": f"b{i}"}
        for i in range(2)
    ]
    await scheduler.add_tasks(requests)

    assert sorted(map(str, announced)) == sorted(["first", *ids[:40], "b0", "b1"])
    assert wakes == (stored_calls if started else 0) and stored_calls >= 3
    await scheduler.shutdown()


@pytest.mark.parametrize("plain_first", [True, False], ids=["plain-first", "replacing-first"])
async def test_overlapping_plain_and_replacing_adds_of_an_id_store_the_replacing_task_in_either_order(
    make_scheduler: SchedulerFactory, store_url: str, record_file: Path, plain_first: bool
) -> None:
    # The add of "x" made first waits behind an add of its kind in flight; the other, made after
    # it, has a lane of its own and is sent at once: either may be stored first (AddCoalescer's
    # docstring). The task stored is the replacing add's either way; only whether the plain add
    # fails as taken depends on the order.
    producer = make_scheduler(store_url, role="producer")
    args = [str(record_file)]
    await producer.schedule_delayed_task("warm", jobs.note, 5, args=args, id="warm")  # (opens the store)

    def add(task_id: str, name: str, replace: bool) -> asyncio.Future[str]:
        call = producer.schedule_delayed_task(
            name, jobs.note, 5, args=args, id=task_id, replace_existing=replace
        )
        return asyncio.ensure_future(call)

    first, second = ("plain", "replacing") if plain_first else ("replacing", "plain")
    in_flight = add("other", "other", first == "replacing")
    outcomes = {name: add("x", name, name == "replacing") for name in (first, second)}
    await asyncio.gather(in_flight, *outcomes.values(), return_exceptions=True)

    assert in_flight.result() == "other" and outcomes["replacing"].result() == "x"
    plain = outcomes["plain"].exception()
    assert plain is None or isinstance(plain, TaskExistsError), plain
    assert {info.id: info.name for info in await producer.list_tasks()}["x"] == "replacing"
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
