"""Coalesced adds: the single adds of one event-loop turn are one store call, each caller with its
own outcome."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from backbeat.api.coalescing import MAX_BATCH, AddCoalescer
from backbeat.errors import StoreUnavailableError, TaskExistsError
from backbeat.model.records import Task

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def task(task_id: str) -> Task:
    return Task(
        id=task_id, name=task_id, job="func:tests.fakes:noop", trigger={"type": "date"}, next_run_time=T0
    )


class Store:
    """Keeps tasks by id and records each call's batch, as a store's ``add`` would behave."""

    def __init__(self, *, fail: BaseException | None = None) -> None:
        self.tasks: dict[str, Task] = {}
        self.batches: list[list[str]] = []
        self.fail = fail

    async def add_many(self, tasks: list[Task], replace: bool) -> None:
        self.batches.append([t.id for t in tasks])
        if self.fail is not None:
            raise self.fail
        taken = [t.id for t in tasks if t.id in self.tasks and not replace]
        if taken:
            raise TaskExistsError(taken)
        self.tasks.update({t.id: t for t in tasks})


async def test_the_adds_of_one_loop_turn_are_one_store_call() -> None:
    store = Store()
    coalescer = AddCoalescer(store.add_many)
    await asyncio.gather(*(coalescer.add(task(f"t{i}"), replace=False) for i in range(100)))
    assert len(store.batches) == 1 and len(store.batches[0]) == 100
    assert len(store.tasks) == 100


async def test_sequential_adds_are_one_call_each() -> None:
    store = Store()
    coalescer = AddCoalescer(store.add_many)
    for i in range(3):
        await coalescer.add(task(f"t{i}"), replace=False)
    assert store.batches == [["t0"], ["t1"], ["t2"]]


async def test_a_stored_duplicate_fails_only_its_caller() -> None:
    store = Store()
    store.tasks["taken"] = task("taken")
    coalescer = AddCoalescer(store.add_many)
    ids = ["a", "taken", "b", "c"]
    results = await asyncio.gather(
        *(coalescer.add(task(i), replace=False) for i in ids), return_exceptions=True
    )
    assert [type(r).__name__ for r in results] == ["NoneType", "TaskExistsError", "NoneType", "NoneType"]
    assert isinstance(results[1], TaskExistsError) and results[1].task_ids == ["taken"]
    assert set(store.tasks) == {"taken", "a", "b", "c"}


async def test_the_same_id_twice_in_one_turn_stores_the_first_and_fails_the_second() -> None:
    store = Store()
    coalescer = AddCoalescer(store.add_many)
    first, second = task("same"), task("same")
    results = await asyncio.gather(
        coalescer.add(first, replace=False), coalescer.add(second, replace=False), return_exceptions=True
    )
    assert results[0] is None and isinstance(results[1], TaskExistsError)
    assert store.tasks["same"] is first


async def test_replacing_and_plain_adds_go_in_separate_calls() -> None:
    store = Store()
    store.tasks["x"] = task("x")
    coalescer = AddCoalescer(store.add_many)
    await asyncio.gather(coalescer.add(task("x"), replace=True), coalescer.add(task("y"), replace=False))
    assert sorted(store.batches) == [["x"], ["y"]]


async def test_a_store_error_fails_every_caller_of_the_batch() -> None:
    store = Store(fail=StoreUnavailableError("down"))
    coalescer = AddCoalescer(store.add_many)
    results = await asyncio.gather(
        *(coalescer.add(task(f"t{i}"), replace=False) for i in range(3)), return_exceptions=True
    )
    assert all(isinstance(r, StoreUnavailableError) for r in results)
    assert len(store.batches) == 1


async def test_a_cancelled_caller_does_not_stop_the_others() -> None:
    store = Store()
    coalescer = AddCoalescer(store.add_many)
    calls = [asyncio.ensure_future(coalescer.add(task(f"t{i}"), replace=False)) for i in range(3)]
    await asyncio.sleep(0)
    calls[0].cancel()
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert isinstance(results[0], asyncio.CancelledError) and results[1:] == [None, None]
    assert {"t1", "t2"} <= set(store.tasks)  # the cancelled caller's task may be stored or not


async def test_a_repeated_id_gets_the_first_adds_error_when_the_first_fails() -> None:
    store = Store(fail=StoreUnavailableError("down"))
    coalescer = AddCoalescer(store.add_many)
    results = await asyncio.gather(
        coalescer.add(task("same"), replace=False),
        coalescer.add(task("same"), replace=False),
        return_exceptions=True,
    )
    assert [type(r) for r in results] == [StoreUnavailableError, StoreUnavailableError]  # not "exists"


async def test_more_adds_than_a_batch_holds_are_several_store_calls() -> None:
    store = Store()
    coalescer = AddCoalescer(store.add_many)
    await asyncio.gather(*(coalescer.add(task(f"t{i}"), replace=False) for i in range(MAX_BATCH + 5)))
    assert [len(batch) for batch in store.batches] == [MAX_BATCH, 5]
