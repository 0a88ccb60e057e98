"""Contract: the engine's claims on every store, where a store's own behaviour decides the outcome."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from backbeat.abc import Store
from backbeat.engine.loop import Engine, EngineConfig
from backbeat.executors import AsyncIOExecutor
from backbeat.model.events import EventHub
from backbeat.model.records import Claim, TaskOptions
from backbeat.model.registry import JobRegistry
from backbeat.model.triggers import make_trigger_spec
from tests.contract.helpers import LEASE, T0, task


async def test_stop_gives_back_what_the_next_claim_in_flight_took(
    store: Store, peer: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry, ran = JobRegistry(), asyncio.Event()

    async def job() -> None:
        ran.set()

    ref = registry.ref_for(job).ref
    once = TaskOptions(misfire_grace_time=None)
    # several, so that a sharded store's claim of one finds one whichever shard it starts at
    tasks = [task(f"t{i}", job=ref, options=once, at=T0 + timedelta(seconds=i)) for i in range(8)]
    for one in tasks:
        one.trigger = make_trigger_spec("date", run_date=one.next_run_time, now=T0)
    await store.add(tasks)
    claim_due, held, replies, taken = store.claim_due, asyncio.Event(), asyncio.Event(), list[list[str]]()

    async def second_reply_held(owner: str, **kwargs: Any) -> Claim:
        claim = await claim_due(owner, **kwargs)
        taken.append([t.id for t in claim.tasks])
        if len(taken) == 2:
            held.set()
            await replies.wait()  # taken by the store, its reply in flight
        return claim

    monkeypatch.setattr(store, "claim_due", second_reply_held)
    config = EngineConfig(owner="w1", lease=LEASE, batch_size=1, poll_interval=60, history=None)
    engine = Engine(
        store, registry, {"default": AsyncIOExecutor()}, EventHub(), config, clock=lambda: T0 + LEASE
    )
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


async def test_stop_gives_back_what_a_claim_in_flight_took(
    store: Store, peer: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = JobRegistry()

    async def job() -> None:
        raise AssertionError("nothing runs: the only claim is in flight when the engine stops")

    ref = registry.ref_for(job).ref
    once = TaskOptions(misfire_grace_time=None)
    tasks = [task(f"t{i}", job=ref, options=once, at=T0 + timedelta(seconds=i)) for i in range(8)]
    for one in tasks:
        one.trigger = make_trigger_spec("date", run_date=one.next_run_time, now=T0)
    await store.add(tasks)
    claim_due, held, replies, taken = store.claim_due, asyncio.Event(), asyncio.Event(), list[list[str]]()

    async def reply_held(owner: str, **kwargs: Any) -> Claim:
        claim = await claim_due(owner, **kwargs)
        taken.append([t.id for t in claim.tasks])
        held.set()
        await replies.wait()  # taken by the store, its reply in flight
        return claim

    monkeypatch.setattr(store, "claim_due", reply_held)
    config = EngineConfig(owner="w1", lease=LEASE, batch_size=100, poll_interval=60, history=None)
    engine = Engine(
        store, registry, {"default": AsyncIOExecutor()}, EventHub(), config, clock=lambda: T0 + LEASE
    )
    await engine.start()
    async with asyncio.timeout(10):
        await held.wait()  # the first claim, an ordinary one (no batch before it was full)
        stopping = asyncio.get_running_loop().create_task(engine.stop())
        await asyncio.sleep(0.05)
        replies.set()
        await stopping

    [in_flight] = taken
    assert sorted(in_flight) == sorted(t.id for t in tasks)
    claim = await peer.claim_due("w2", now=T0 + LEASE, lease=LEASE, limit=10)
    # what the claim in flight took, given back at once, not once w1's claim has lapsed
    assert sorted(t.id for t in claim.tasks) == sorted(t.id for t in tasks)
