"""Contract: storing, reading, listing, changing and removing tasks."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from backbeat.abc import Store
from backbeat.errors import TaskExistsError, TaskNotFoundError
from backbeat.model.records import RunOutcome, Task, TaskFilter, TaskOptions
from tests.contract.helpers import LEASE, MINUTE, T0, finished, start_run, task


async def test_a_task_round_trips_every_field(store: Store) -> None:
    original = task(
        "t1",
        tags=("red", "blue"),
        args=[1, "two", {"three": [3]}],
        kwargs={"key": None, "n": 1.5},
        data={"order_id": "o-1", "nested": {"ok": True}},
        options=TaskOptions(misfire_grace_time=None, coalesce=False, max_instances=3, timeout=2.5),
        trace_context={"traceparent": "00-abc-def-01"},
    )
    await store.add([original])
    stored = await store.get("t1")
    assert stored is not None
    assert stored.to_document() == original.to_document()
    assert await store.get("nope") is None


async def test_an_existing_id_is_refused_and_nothing_of_the_batch_is_written(store: Store) -> None:
    await store.add([task("a")])
    with pytest.raises(TaskExistsError) as raised:
        await store.add([task("b"), task("a", name="other")])
    assert raised.value.task_ids == ["a"]
    assert await store.get("b") is None
    stored = await store.get("a")
    assert stored is not None and stored.name == "name-a"


async def test_a_single_add_stores_its_tags_and_is_refused_for_an_existing_id(store: Store) -> None:
    await store.add([task("a", tags=("red", "blue"))])
    with pytest.raises(TaskExistsError) as raised:
        await store.add([task("a", name="other", tags=("green",))])
    assert raised.value.task_ids == ["a"]
    stored = await store.get("a")
    assert stored is not None and (stored.name, stored.tags) == ("name-a", ("red", "blue"))
    assert [t.id for t in (await store.list(TaskFilter(tag="blue")))[0]] == ["a"]
    assert (await store.list(TaskFilter(tag="green")))[0] == []


@pytest.mark.parametrize(
    ("batch", "replace"),
    [
        pytest.param(1, False, id="lone"),
        pytest.param(1, True, id="lone-replace"),
        pytest.param(3, False, id="batch"),
        pytest.param(3, True, id="batch-replace"),
        pytest.param(1001, False, id="past-one-redis-script"),  # (the empty one last)
    ],
)
async def test_an_empty_id_is_refused_at_call_time_and_nothing_of_the_batch_is_written(
    store: Store, batch: int, replace: bool
) -> None:
    # before, stores kept a task of id '', which Redis paging reads as "from the start"
    tasks = [task(f"t{i:04d}") for i in range(batch - 1)]
    tasks.insert(1 if batch == 3 else batch - 1, task("", name="nameless"))
    with pytest.raises(ValueError, match=r"task id '' \(of the task named 'nameless'\) is empty"):
        await store.add(tasks, replace=replace)
    assert (await store.list())[0] == []


@pytest.mark.parametrize(
    ("bad_id", "why"),
    [
        pytest.param("a\x00b", "holds a NUL character", id="nul"),
        pytest.param("a\ud800b", "holds a lone surrogate", id="lone-surrogate"),
        pytest.param("x" * 1025, "is 1,025 bytes long in UTF-8", id="1025-bytes"),
        pytest.param("é" * 513, "is 1,026 bytes long in UTF-8", id="513-two-byte-characters"),
    ],
)
@pytest.mark.parametrize(
    ("batch", "replace"),
    [
        pytest.param(1, False, id="lone"),
        pytest.param(3, True, id="batch-replace"),
        pytest.param(1001, False, id="past-one-redis-script"),  # (the bad one last)
    ],
)
async def test_an_id_no_store_can_keep_is_refused_at_call_time_naming_it(
    store: Store, bad_id: str, why: str, batch: int, replace: bool
) -> None:
    # the facade and migrate refuse them already; a store called directly kept some (Redis's
    # members separate an id from the rest by a NUL)
    tasks = [task(f"t{i:04d}") for i in range(batch - 1)]
    tasks.insert(1 if batch == 3 else batch - 1, task(bad_id))
    with pytest.raises(ValueError, match=rf"^task id {re.escape(repr(bad_id[:40]))}.* {why}"):
        await store.add(tasks, replace=replace)
    assert (await store.list())[0] == []
    await store.add([task("é" * 512)])  # 1,024 bytes: kept
    assert [t.id for t in (await store.list())[0]] == ["é" * 512]


async def test_replace_overwrites_but_keeps_running_and_counters(store: Store) -> None:
    await store.add([task("a", max_instances=2)])
    [run] = await start_run(store, "w1", then=T0 + MINUTE)
    [second] = await start_run(store, "w1", now=T0 + MINUTE, then=T0 + 2 * MINUTE)
    await store.complete("w1", [finished(second, RunOutcome.FAILURE, at=T0 + MINUTE)])
    before = await store.get("a")
    assert before is not None and (before.running, before.runs, before.failures) == (1, 1, 1)

    await store.add([task("a", name="renamed", at=T0 + timedelta(hours=1), tags=("new",))], replace=True)
    after = await store.get("a")
    assert after is not None
    assert (after.name, after.next_run_time, after.tags) == ("renamed", T0 + timedelta(hours=1), ("new",))
    assert (after.running, after.runs, after.failures, after.last_outcome) == (1, 1, 1, "failure")
    assert after.version > before.version
    assert [r.id for r in await store.list_runs("a")] == [run.id]


async def test_list_is_ordered_by_id_and_pages_with_a_cursor(store: Store) -> None:
    await store.add([task(i) for i in ("c", "e", "a", "d", "b")])
    everything, cursor = await store.list()
    assert [t.id for t in everything] == ["a", "b", "c", "d", "e"] and cursor is None

    pages: list[list[str]] = []
    cursor = None
    while True:
        page, cursor = await store.list(cursor=cursor, limit=2)
        pages.append([t.id for t in page])
        if cursor is None:
            break
    assert pages == [["a", "b"], ["c", "d"], ["e"]]
    last, cursor = await store.list(cursor="d", limit=1)
    assert [t.id for t in last] == ["e"] and cursor is None


async def test_list_filters_by_tag_name_job_paused_and_orphaned(store: Store) -> None:
    await store.add(
        [
            task("a", tags=("red",)),
            task("b", tags=("red", "blue"), paused=True),
            task("c", name="special", tags=("blue",)),
            task("d", orphaned="job not registered"),
            task("e", job="other:job"),
        ]
    )

    async def ids(task_filter: TaskFilter, limit: int | None = None) -> list[str]:
        found: list[str] = []
        cursor = None
        while True:
            page, cursor = await store.list(task_filter, cursor=cursor, limit=limit)
            found += [t.id for t in page]
            if cursor is None:
                return found

    assert await ids(TaskFilter(tag="red")) == ["a", "b"]
    assert await ids(TaskFilter(tag="blue"), limit=1) == ["b", "c"]
    assert await ids(TaskFilter(tag="green")) == []
    assert await ids(TaskFilter(name="special")) == ["c"]
    assert await ids(TaskFilter(job="other:job")) == ["e"]
    assert await ids(TaskFilter(paused=True)) == ["b"]
    assert await ids(TaskFilter(paused=False), limit=2) == ["a", "c", "d", "e"]
    assert await ids(TaskFilter(orphaned=True)) == ["d"]
    assert await ids(TaskFilter(tag="red", paused=False)) == ["a"]


async def test_update_changes_fields_and_bumps_the_version(store: Store) -> None:
    await store.add([task("a", tags=("old",))])
    updated = await store.update(
        "a", paused=True, name="renamed", tags=["new"], data={"x": 1}, options=TaskOptions(max_instances=4)
    )
    assert (updated.paused, updated.name, updated.tags, updated.data) == (True, "renamed", ("new",), {"x": 1})
    assert updated.version == 1 and updated.options.max_instances == 4
    stored = await store.get("a")
    assert stored is not None and stored.to_document() == updated.to_document()
    assert [t.id for t in (await store.list(TaskFilter(tag="new")))[0]] == ["a"]
    assert (await store.list(TaskFilter(tag="old")))[0] == []
    assert (await store.update("a", paused=False)).version == 2


async def test_update_of_an_unknown_task_raises(store: Store) -> None:
    with pytest.raises(TaskNotFoundError):
        await store.update("nope", paused=True)


async def test_update_moves_the_next_run_time(store: Store) -> None:
    await store.add([task("a", at=T0 + timedelta(hours=1))])
    assert not await store.claim_due("w1", now=T0, lease=LEASE, limit=10)
    await store.update("a", next_run_time=T0)
    claim = await store.claim_due("w1", now=T0, lease=LEASE, limit=10)
    assert [t.id for t in claim.tasks] == ["a"]


async def test_remove_returns_the_ids_that_existed(store: Store) -> None:
    await store.add([task("a"), task("b")])
    assert await store.remove(["a", "nope"]) == ["a"]
    assert await store.get("a") is None
    assert [t.id for t in (await store.list())[0]] == ["b"]
    assert await store.remove([]) == []


async def test_remove_by_tag(store: Store) -> None:
    await store.add([task("a", tags=("x",)), task("b", tags=("x", "y")), task("c", tags=("y",))])
    assert sorted(await store.remove_by_tag("x")) == ["a", "b"]
    assert [t.id for t in (await store.list())[0]] == ["c"]
    assert await store.remove_by_tag("x") == []
    assert [t.id for t in (await store.list(TaskFilter(tag="y")))[0]] == ["c"]


async def test_a_removed_tasks_runs_finish_and_their_completion_changes_nothing(store: Store) -> None:
    await store.add([task("a")])
    [run] = await start_run(store, "w1", then=T0 + MINUTE)
    await store.remove(["a"])
    assert [r.id for r in await store.list_runs()] == [run.id]
    assert await store.complete("w1", [finished(run)]) == set()
    assert await store.list_runs() == []
    assert await store.get("a") is None


async def test_clear_removes_every_task_and_run(store: Store) -> None:
    await store.add([task("a"), task("b", at=None)])
    await start_run(store, "w1", then=T0 + MINUTE)
    await store.enqueue_run("b", fire_time=T0, now=T0)
    await store.clear()
    assert await store.list() == ([], None)
    assert await store.list_runs() == []
    assert await store.next_wakeup() is None
    await store.add([task("a")])  # the store is usable after a clear
    assert await store.get("a") is not None


async def test_a_stored_task_is_a_copy(store: Store) -> None:
    original = task("a")
    await store.add([original])
    original.name = "changed after add"
    stored = await store.get("a")
    assert stored is not None and stored.name == "name-a"
    stored.name = "changed after get"
    again = await store.get("a")
    assert again is not None and again.name == "name-a"


async def test_tasks_without_a_next_run_time_stay_until_removed(store: Store) -> None:
    await store.add([task("a", at=None)])
    assert not await store.claim_due("w1", now=T0, lease=LEASE, limit=10)
    assert isinstance(await store.get("a"), Task)
