"""Contract: the engine's claims on every store, where a store's own behaviour decides the outcome."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest

from backbeat.abc import Store
from backbeat.engine.loop import Engine, EngineConfig
from backbeat.executors import AsyncIOExecutor
from backbeat.model.events import EventHub
from backbeat.model.records import Claim, Task, TaskOptions
from backbeat.model.registry import JobRegistry
from backbeat.model.triggers import make_trigger_spec
from tests.contract.helpers import LEASE, T0, task


async def test_stop_gives_back_what_the_next_claim_in_flight_took(
    store: Store, peer: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry, ran = JobRegistry(), asyncio.Event()

    async def job() -> None:
        ran.set()

    tasks = await _one_shots(store, registry, job)
    held, replies, taken = _reply_held(store, monkeypatch, claim=2)
    engine = _engine(store, registry, batch_size=1)
    await engine.start()
    async with asyncio.timeout(10):
        await ran.wait()  # the first batch started: the next claim, sent before its fire, took one
        await held.wait()
        stopping = asyncio.get_running_loop().create_task(engine.stop())
        await asyncio.sleep(0.05)
        replies.set()
        await stopping

    [ran_here], [in_flight] = taken
    claim = await peer.claim_due("w2", now=T0 + LEASE, lease=LEASE, limit=10)
    # what the claim in flight took at once, not once w1's claim has lapsed
    assert sorted(t.id for t in claim.tasks) == sorted({t.id for t in tasks} - {ran_here})
    assert in_flight in {t.id for t in claim.tasks}


# 0.0 is shutdown(wait=False): a claim answered within CLAIM_GRACE is given back all the same
@pytest.mark.parametrize("timeout", [None, 0.0], ids=["shutdown_timeout", "no wait"])
async def test_stop_gives_back_what_a_claim_in_flight_took(
    store: Store, peer: Store, monkeypatch: pytest.MonkeyPatch, timeout: float | None
) -> None:
    registry = JobRegistry()

    async def job() -> None:
        raise AssertionError("nothing runs: the only claim is in flight when the engine stops")

    tasks = await _one_shots(store, registry, job)
    held, replies, taken = _reply_held(store, monkeypatch, claim=1)
    engine = _engine(store, registry, batch_size=100)
    await engine.start()
    async with asyncio.timeout(10):
        await held.wait()  # the first claim, an ordinary one (no batch before it was full)
        stopping = asyncio.get_running_loop().create_task(engine.stop(timeout))
        await asyncio.sleep(0.05)
        replies.set()
        await stopping

    [in_flight] = taken
    assert sorted(in_flight) == sorted(t.id for t in tasks)
    claim = await peer.claim_due("w2", now=T0 + LEASE, lease=LEASE, limit=10)
    # what the claim in flight took, given back at once, not once w1's claim has lapsed
    assert sorted(t.id for t in claim.tasks) == sorted(t.id for t in tasks)


async def test_stop_waits_for_a_claim_in_flight_no_longer_than_its_timeout(
    store: Store, peer: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = JobRegistry()

    async def job() -> None:
        raise AssertionError("nothing runs: the only claim is in flight when the engine stops")

    await _one_shots(store, registry, job)
    held, replies, taken = _reply_held(store, monkeypatch, claim=1)
    engine = _engine(store, registry, batch_size=100)
    await engine.start()
    try:
        # a lease is 10 s: the reply that never comes is waited for CLAIM_GRACE (1 s; the
        # stop's timeout, 0.2 s, is shorter), not a lease
        async with asyncio.timeout(LEASE.total_seconds() / 2):
            await held.wait()
            await engine.stop(timeout=0.2)
    finally:
        replies.set()

    [in_flight] = taken
    assert len(in_flight) == 8
    # what that claim took stays claimed until its lease ends (by the store's clock)
    assert (await peer.claim_due("w2", now=T0 + LEASE, lease=LEASE, limit=10)).tasks == []


async def _one_shots(store: Store, registry: JobRegistry, job: Callable[[], Awaitable[None]]) -> list[Task]:
    """Eight one-shots of ``job``, due a second apart from ``T0``, added to ``store``: several,
    so that a sharded store's claim of one finds one whichever shard it starts at."""
    ref = registry.ref_for(job).ref
    once = TaskOptions(misfire_grace_time=None)
    tasks = [task(f"t{i}", job=ref, options=once, at=T0 + timedelta(seconds=i)) for i in range(8)]
    for one in tasks:
        one.trigger = make_trigger_spec("date", run_date=one.next_run_time, now=T0)
    await store.add(tasks)
    return tasks


def _reply_held(
    store: Store, monkeypatch: pytest.MonkeyPatch, *, claim: int
) -> tuple[asyncio.Event, asyncio.Event, list[list[str]]]:
    """Make ``store``'s ``claim``-th claim hold its reply (the store took the tasks) until the
    second event is set; the first is set when it holds; the ids each claim took."""
    claim_due, held, replies, taken = store.claim_due, asyncio.Event(), asyncio.Event(), list[list[str]]()

    async def reply_held(owner: str, **kwargs: Any) -> Claim:
        claimed = await claim_due(owner, **kwargs)
        taken.append([t.id for t in claimed.tasks])
        if len(taken) == claim:
            held.set()
            await replies.wait()  # taken by the store, its reply in flight
        return claimed

    monkeypatch.setattr(store, "claim_due", reply_held)
    return held, replies, taken


def _engine(store: Store, registry: JobRegistry, *, batch_size: int) -> Engine:
    config = EngineConfig(owner="w1", lease=LEASE, batch_size=batch_size, poll_interval=60, history=None)
    return Engine(
        store, registry, {"default": AsyncIOExecutor()}, EventHub(), config, clock=lambda: T0 + LEASE
    )
