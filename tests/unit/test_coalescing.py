"""Coalesced adds: a lone add is sent at once, the adds made while it is in flight are one store
call after it, each caller with its own outcome."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from backbeat.api.coalescing import MAX_BATCH, SPLIT_AT, AddCoalescer
from backbeat.errors import StoreError, StoreUnavailableError, TaskExistsError
from backbeat.model.records import Task

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def task(task_id: str) -> Task:
    return Task(
        id=task_id, name=task_id, job="func:tests.fakes:noop", trigger={"type": "date"}, next_run_time=T0
    )


class Store:
    """Keeps tasks by id and records each call's batch, as a store's ``add`` would behave: the
    call waits for its reply (a loop turn) before it returns."""

    def __init__(self, *, fail: BaseException | None = None, refused: str | None = None) -> None:
        self.tasks: dict[str, Task] = {}
        self.batches: list[list[str]] = []
        self.fail = fail
        self.refused = refused
        """The id of a task the store cannot write: a call holding it fails with ``StoreError``."""

    async def add_many(self, tasks: list[Task], replace: bool) -> None:
        self.batches.append([t.id for t in tasks])
        await asyncio.sleep(0)  # the round trip
        self.apply(tasks, replace)

    def apply(self, tasks: list[Task], replace: bool) -> None:
        """Store ``tasks``, or raise as the store's call would."""
        if self.fail is not None:
            raise self.fail
        if any(t.id == self.refused for t in tasks):
            raise StoreError(f"cannot write {self.refused}")
        taken = [t.id for t in tasks if t.id in self.tasks and not replace]
        if taken:
            raise TaskExistsError(taken)
        self.tasks.update({t.id: t for t in tasks})


async def test_a_lone_add_is_sent_before_the_loop_turns() -> None:
    store = Store()
    turned: list[bool] = []
    sent_in_turn: list[bool] = []
    add_many = store.add_many

    async def noting_add_many(tasks: list[Task], replace: bool) -> None:
        sent_in_turn.append(not turned)
        await add_many(tasks, replace)

    coalescer = AddCoalescer(noting_add_many)
    asyncio.get_running_loop().call_soon(turned.append, True)
    await coalescer.add(task("t0"), replace=False)
    assert sent_in_turn == [True]  # no waiting for other adds to join


async def test_the_adds_made_while_one_is_in_flight_are_one_store_call_after_it() -> None:
    store = Store()
    coalescer = AddCoalescer(store.add_many)
    await asyncio.gather(*(coalescer.add(task(f"t{i}"), replace=False) for i in range(SPLIT_AT)))
    assert store.batches == [["t0"], [f"t{i}" for i in range(1, SPLIT_AT)]]
    assert len(store.tasks) == SPLIT_AT


class GatedStore(Store):
    """A store whose calls wait until let go, one at a time, in the order they came."""

    def __init__(self) -> None:
        super().__init__()
        self.gates: list[asyncio.Event] = []

    async def add_many(self, tasks: list[Task], replace: bool) -> None:
        self.batches.append([t.id for t in tasks])
        gate = asyncio.Event()
        self.gates.append(gate)
        await gate.wait()
        self.apply(tasks, replace)

    async def let_go(self, call: int) -> None:
        """Let the ``call``-th call (from 0) go on, once it has come (within a few loop turns)."""
        for _ in range(20):
            if len(self.gates) > call:
                break
            await asyncio.sleep(0)
        self.gates[call].set()


async def test_many_adds_waiting_go_as_two_batches_in_flight_at_once() -> None:
    store = GatedStore()
    coalescer = AddCoalescer(store.add_many)
    adds = asyncio.gather(*(coalescer.add(task(f"t{i}"), replace=False) for i in range(101)))
    await store.let_go(0)
    for _ in range(5):
        await asyncio.sleep(0)
    # both halves sent while neither is answered: the store takes one while the next is built
    assert store.batches == [["t0"], [f"t{i}" for i in range(1, 51)], [f"t{i}" for i in range(51, 101)]]
    await store.let_go(1)
    await store.let_go(2)
    await adds
    assert len(store.tasks) == 101


async def test_callers_answered_add_again_while_the_other_batch_is_in_flight() -> None:
    store = GatedStore()
    coalescer = AddCoalescer(store.add_many)

    async def producer(p: int) -> None:
        for i in range(2):
            await coalescer.add(task(f"p{p}-{i}"), replace=False)

    adds = asyncio.gather(*(producer(p) for p in range(65)))
    await store.let_go(0)  # p0's lone add: 64 wait, and p0's next: sent as two batches
    await store.let_go(1)  # the first half answered, the second still in flight
    for _ in range(5):
        await asyncio.sleep(0)
    assert [len(batch) for batch in store.batches] == [1, 33, 32, 33]  # the answered 33 again
    assert not store.gates[2].is_set()
    for call in range(2, 5):
        await store.let_go(call)
    await adds
    assert len(store.tasks) == 130


async def test_an_add_of_an_id_in_flight_waits_for_it_and_fails_once_it_is_stored() -> None:
    store = GatedStore()
    coalescer = AddCoalescer(store.add_many)
    first = asyncio.gather(*(coalescer.add(task(f"t{i}"), replace=False) for i in range(SPLIT_AT + 1)))
    await store.let_go(0)
    for _ in range(5):
        await asyncio.sleep(0)
    assert len(store.batches) == 3  # t1.. and ..t32, both in flight
    again = asyncio.gather(
        coalescer.add(task("t1"), replace=False),
        coalescer.add(task("new"), replace=False),
        return_exceptions=True,
    )
    await store.let_go(2)  # the batch without t1 answered: "new" is sent, t1 waits for its batch
    for _ in range(5):
        await asyncio.sleep(0)
    assert store.batches[3] == ["new"]
    await store.let_go(3)
    await store.let_go(1)
    await store.let_go(4)
    await first
    results = await again
    assert isinstance(results[0], TaskExistsError) and results[1] == "new"
    assert store.batches[4] == ["t1"]


async def test_callers_that_add_again_once_answered_join_the_next_batch() -> None:
    store = Store()
    coalescer = AddCoalescer(store.add_many)

    async def producer(p: int) -> None:
        for i in range(5):
            await coalescer.add(task(f"p{p}-{i}"), replace=False)

    await asyncio.gather(*(producer(p) for p in range(10)))
    assert [len(batch) for batch in store.batches] == [1, 10, 10, 10, 10, 9]
    assert len(store.tasks) == 50


async def test_an_add_after_the_batch_was_stored_is_sent_at_once_again() -> None:
    store = Store()
    coalescer = AddCoalescer(store.add_many)
    await asyncio.gather(*(coalescer.add(task(f"t{i}"), replace=False) for i in range(3)))
    await coalescer.add(task("later"), replace=False)
    assert store.batches == [["t0"], ["t1", "t2"], ["later"]]


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
    assert [type(r).__name__ for r in results] == ["str", "TaskExistsError", "str", "str"]
    assert isinstance(results[1], TaskExistsError) and results[1].task_ids == ["taken"]
    assert set(store.tasks) == {"taken", "a", "b", "c"}


async def test_the_same_id_added_again_while_in_flight_stores_the_first_and_fails_the_second() -> None:
    store = Store()
    coalescer = AddCoalescer(store.add_many)
    first, second = task("same"), task("same")
    results = await asyncio.gather(
        coalescer.add(first, replace=False), coalescer.add(second, replace=False), return_exceptions=True
    )
    assert results[0] == "same" and isinstance(results[1], TaskExistsError)
    assert store.tasks["same"] is first


async def test_replacing_and_plain_adds_go_in_separate_calls() -> None:
    store = Store()
    store.tasks["x"] = task("x")
    coalescer = AddCoalescer(store.add_many)
    await asyncio.gather(coalescer.add(task("x"), replace=True), coalescer.add(task("y"), replace=False))
    assert sorted(store.batches) == [["x"], ["y"]]  # each sent at once: none waited for the other


async def test_the_same_id_twice_in_one_batch_stores_the_first_and_fails_the_second() -> None:
    store = Store()
    coalescer = AddCoalescer(store.add_many)
    first, second = task("same"), task("same")
    results = await asyncio.gather(
        coalescer.add(task("lone"), replace=False),
        coalescer.add(first, replace=False),
        coalescer.add(second, replace=False),
        return_exceptions=True,
    )
    assert list(results[:2]) == ["lone", "same"] and isinstance(results[2], TaskExistsError)
    assert store.batches == [["lone"], ["same"]]  # the repeat is not sent
    assert store.tasks["same"] is first


async def test_a_store_error_fails_every_caller_of_the_batch() -> None:
    store = Store(fail=StoreUnavailableError("down"))
    coalescer = AddCoalescer(store.add_many)
    results = await asyncio.gather(
        *(coalescer.add(task(f"t{i}"), replace=False) for i in range(3)), return_exceptions=True
    )
    assert all(isinstance(r, StoreUnavailableError) for r in results)
    assert store.batches == [["t0"], ["t1", "t2"]]  # the lone first call, then the batch


async def test_a_task_the_store_refuses_fails_only_its_caller_of_the_batch() -> None:
    store = Store(refused="t2")
    coalescer = AddCoalescer(store.add_many)
    results = await asyncio.gather(
        *(coalescer.add(task(f"t{i}"), replace=False) for i in range(4)), return_exceptions=True
    )
    assert results[:2] == ["t0", "t1"] and results[3] == "t3"
    assert isinstance(results[2], StoreError) and str(results[2]) == "cannot write t2"
    assert sorted(store.tasks) == ["t0", "t1", "t3"]
    # the refused batch, then its adds one at a time
    assert store.batches == [["t0"], ["t1", "t2", "t3"], ["t1"], ["t2"], ["t3"]]


async def test_a_store_refusing_every_add_alike_is_not_asked_once_per_add() -> None:
    store = Store(fail=StoreError("READONLY You can't write against a read only replica."))
    coalescer = AddCoalescer(store.add_many)
    results = await asyncio.gather(
        *(coalescer.add(task(f"t{i}"), replace=False) for i in range(6)), return_exceptions=True
    )
    assert all(isinstance(r, StoreError) and "READONLY" in str(r) for r in results)
    # the lone first call, the refused batch, then two alone refused alike: the rest are not sent
    assert store.batches == [["t0"], ["t1", "t2", "t3", "t4", "t5"], ["t1"], ["t2"]]


async def test_a_cancelled_caller_does_not_stop_the_others() -> None:
    store = Store()
    coalescer = AddCoalescer(store.add_many)
    calls = [asyncio.ensure_future(coalescer.add(task(f"t{i}"), replace=False)) for i in range(3)]
    await asyncio.sleep(0)
    calls[0].cancel()
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert isinstance(results[0], asyncio.CancelledError) and results[1:] == ["t1", "t2"]
    assert {"t1", "t2"} <= set(store.tasks)  # the cancelled caller's task may be stored or not


async def test_a_cancelled_caller_in_a_batch_does_not_stop_the_others() -> None:
    store = Store()
    coalescer = AddCoalescer(store.add_many)
    calls = [asyncio.ensure_future(coalescer.add(task(f"t{i}"), replace=False)) for i in range(3)]
    await asyncio.sleep(0)
    calls[1].cancel()
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert results[0] == "t0" and isinstance(results[1], asyncio.CancelledError) and results[2] == "t2"
    assert {"t0", "t2"} <= set(store.tasks)


async def test_an_add_on_a_new_event_loop_is_not_held_by_a_call_left_on_an_ended_one() -> None:
    store = Store()
    never: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def add_many(tasks: list[Task], replace: bool) -> None:
        if tasks[0].id == "stuck":
            await never  # a call that never returns on this loop
        await store.add_many(tasks, replace)

    coalescer = AddCoalescer(add_many)
    stuck = asyncio.ensure_future(coalescer.add(task("stuck"), replace=False))
    await asyncio.sleep(0)
    await asyncio.to_thread(asyncio.run, coalescer.add(task("fresh"), replace=False))
    assert store.batches == [["fresh"]]
    stuck.cancel()


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
    await asyncio.gather(*(coalescer.add(task(f"t{i}"), replace=False) for i in range(2 * MAX_BATCH + 6)))
    # the first half of what waited, then the rest: MAX_BATCH at most each
    assert [len(batch) for batch in store.batches] == [1, MAX_BATCH, MAX_BATCH, 5]


async def test_the_stored_hook_hears_of_each_call_that_stored_its_tasks_before_their_callers() -> None:
    store = Store(refused="t2")
    heard: list[list[str]] = []
    answered: list[str] = []
    coalescer = AddCoalescer(store.add_many, lambda tasks: heard.append([t.id for t in tasks]))

    async def add(task_id: str) -> None:
        answered.append(await coalescer.add(task(task_id), replace=False))
        answered.append(f"heard {len(heard)}")

    results = await asyncio.gather(*(add(f"t{i}") for i in range(4)), return_exceptions=True)
    assert isinstance(results[2], StoreError)
    # the lone call, then the refused batch one add at a time: t2's call is not heard of
    assert heard == [["t0"], ["t1"], ["t3"]]
    assert answered == ["t0", "heard 1", "t1", "heard 2", "t3", "heard 3"]
