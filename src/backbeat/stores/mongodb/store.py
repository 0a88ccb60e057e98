"""The MongoDB store, on PyMongo's asyncio API (``pymongo.AsyncMongoClient``).

MongoDB makes single-document writes atomic; this store needs no transactions (and so no
replica set). Every lease is a conditional single-document write:

* ``claim_due`` reads candidates, then leases each with a compare-and-set on what it read
  (one ``bulk_write``), each write stamped with a token unique to the call, and reads back
  what carries its token: two owners never both win a task or a run.
* ``fire``, ``complete``, ``extend`` and ``release`` match ``claimed_by``/``owner``.
* Leases are set and judged by the server's clock (``$$NOW`` in update pipelines and
  ``$expr`` filters, see :mod:`.documents`), never by a client's.
* ``max_instances`` is enforced by the task document's own update (``running`` raised only
  while ``running < max_instances``), so it holds across processes.

A run and its task are two documents, so a few steps take two writes. They are ordered so
that a process dying between them errs towards running a fire time rather than losing it:
a new run is inserted before it is counted (leased to its creator, or held for a few
seconds when waiting), and a finished run is deleted before it is counted off. The second
order can leave ``running`` one too high after a crash; ``fire`` recounts a task's runs
whenever ``max_instances`` stops a fire time, so a stale count mends itself.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
from collections import Counter
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

from pymongo import AsyncMongoClient, ReturnDocument, UpdateOne
from pymongo.errors import BulkWriteError

from backbeat.abc import Store
from backbeat.errors import CorruptRecordError, StoreError, TaskExistsError, TaskNotFoundError
from backbeat.model.completed_history import history_row
from backbeat.model.history import HistoryEntry, HistoryQuery, HistorySettings, refuse_ends_before_1970
from backbeat.model.overlap import BUFFERED_UNTIL
from backbeat.model.records import (
    Claim,
    DeadLetter,
    FireDecision,
    FireResult,
    QuarantinedRecord,
    Run,
    RunOutcome,
    RunResult,
    StateRecord,
    Task,
    TaskFilter,
    run_id_for,
)
from backbeat.model.stored_text import refuse_unstorable_ids
from backbeat.stores._common import check_changes, host_clock
from backbeat.stores.mongodb import documents as d
from backbeat.stores.mongodb import history
from backbeat.stores.mongodb.connection import Connection
from backbeat.stores.mongodb.errors import duplicate_indexes, is_duplicate_key, refused_indexes
from backbeat.stores.mongodb.extras import Extras, adopt
from backbeat.stores.mongodb.indexes import HISTORY_TTL, Collections

log = logging.getLogger("backbeat.stores")

READ_BATCH = 500
_CLAIM_ROUNDS = 8
"""Candidate reads per claim: rivals claiming at once take some candidates of each round."""
_US = timedelta(microseconds=1)
_DETACHED = {"detached": 1}
_COUNTERS = {"running": 1, "max_instances": 1, "claimed_by": 1, "version": 1, "next": 1, "quarantine": 1}


class MongoStore:
    """A store in one MongoDB database: tasks in ``collection``, runs, dead letters and
    shared state in ``<collection>.runs``, ``.dead_letters`` and ``.state``, run history in
    ``.history`` (expired by a TTL index ``history_ttl`` after its end, besides the pruning).

    ``url`` is ``mongodb://`` or ``mongodb+srv://``; its path names the database and
    ``?collection=`` the collection unless ``database``/``collection`` are given (defaults
    ``backbeat`` and ``background_jobs``). ``client_options`` go to
    :class:`pymongo.AsyncMongoClient`. A ``client`` given is used as is and not closed.
    """

    def __init__(
        self,
        url: str = "mongodb://localhost:27017",
        *,
        database: str | None = None,
        collection: str | None = None,
        client: AsyncMongoClient[dict[str, Any]] | None = None,
        history_ttl: timedelta = HISTORY_TTL,
        **client_options: Any,
    ) -> None:
        self._conn = Connection(
            url, database=database, collection=collection, client=client, options=client_options
        )
        self._conn.history_ttl = history_ttl
        self._extras = Extras(self._conn, self._decode)

    @property
    def database(self) -> str:
        return self._conn.database_name

    @property
    def collection(self) -> str:
        return self._conn.names.tasks

    def __repr__(self) -> str:
        return f"MongoStore({self._conn.where!r}, database={self.database!r}, collection={self.collection!r})"

    async def open(self) -> None:
        await self._conn.open()

    async def close(self) -> None:
        await self._conn.close()

    # -- tasks -----------------------------------------------------------------------------

    async def add(self, tasks: Sequence[Task], *, replace: bool = False) -> None:
        if not tasks:
            return
        refuse_unstorable_ids(tasks)
        c = await self._conn.collections()
        with self._conn.errors():
            if replace:
                ops = [UpdateOne({"_id": t.id}, d.replace_pipeline(t), upsert=True) for t in tasks]
                await c.tasks.bulk_write(ops, ordered=True)
                self._conn.notify()
                return
            ids = [task.id for task in tasks]
            found = {doc["_id"] for doc in await c.tasks.find({"_id": {"$in": ids}}, {"_id": 1}).to_list()}
            twice = {i for i, n in Counter(ids).items() if n > 1}
            if found or twice:
                raise TaskExistsError(list(dict.fromkeys(i for i in ids if i in found or i in twice)))
            try:
                await c.tasks.insert_many([d.task_document(task) for task in tasks], ordered=False)
            except BulkWriteError as exc:
                # all or nothing: an unordered insert wrote the documents it did not refuse (another
                # process may have added some ids since the check, a document may be too large)
                refused = refused_indexes(exc)
                written = [task_id for i, task_id in enumerate(ids) if i not in refused]
                await c.tasks.delete_many({"_id": {"$in": written}})
                if not is_duplicate_key(exc):
                    raise
                raise TaskExistsError([ids[i] for i in sorted(duplicate_indexes(exc))]) from None
        self._conn.notify()

    async def get(self, task_id: str) -> Task | None:
        c = await self._conn.collections()
        with self._conn.errors():
            doc = await c.tasks.find_one({"_id": task_id, **d.NOT_QUARANTINED})
        return None if doc is None else (await self._decode([doc]))[0][1]

    async def list(
        self, filter: TaskFilter | None = None, *, cursor: str | None = None, limit: int | None = None
    ) -> tuple[builtins.list[Task], str | None]:
        c = await self._conn.collections()
        page: list[Task] = []
        after = cursor
        while True:
            with self._conn.errors():
                query = c.tasks.find(d.list_filter(filter, after)).sort("_id", 1).limit(READ_BATCH)
                docs = await query.to_list()
            for task_id, task in await self._decode(docs):
                after = task_id
                if task is None or (filter is not None and not filter.matches(task)):
                    continue
                if limit is not None and len(page) >= limit:
                    return page, page[-1].id if page else cursor
                page.append(task)
            if len(docs) < READ_BATCH:
                return page, None

    async def update(self, task_id: str, **changes: Any) -> Task:
        changes = check_changes(changes)
        c = await self._conn.collections()
        for _ in range(100):
            current = await self.get(task_id)
            if current is None:
                raise TaskNotFoundError(task_id)
            task = current.copy(**changes)
            task.version += 1
            with self._conn.errors():
                doc = await c.tasks.find_one_and_update(
                    {"_id": task_id, "version": current.version, **d.NOT_QUARANTINED},
                    {"$set": d.update_set(task, next_changed="next_run_time" in changes)},
                    return_document=ReturnDocument.AFTER,
                )
            if doc is not None:
                self._conn.notify()
                updated = (await self._decode([doc]))[0][1]
                if updated is None:
                    raise TaskNotFoundError(task_id)
                return updated
        raise StoreError(f"task {task_id!r} kept changing while it was updated")

    async def remove(self, task_ids: Collection[str]) -> builtins.list[str]:
        ids = list(dict.fromkeys(task_ids))
        if not ids:
            return []
        c = await self._conn.collections()
        with self._conn.errors():
            found = {doc["_id"] for doc in await c.tasks.find({"_id": {"$in": ids}}, {"_id": 1}).to_list()}
            if found:
                # their runs in flight finish, detached: before the tasks go, so a process that
                # stops between the steps leaves no run attached to a task added again; and once
                # more after, for runs a fire created meanwhile
                await c.runs.update_many(*d.detached_runs(list(found)))
                await c.tasks.delete_many({"_id": {"$in": list(found)}})
                await c.runs.delete_many(d.buffered_filter(list(found)))  # they leave with their task
                await c.runs.update_many(*d.detached_runs(list(found)))
        return [i for i in ids if i in found]

    async def remove_by_tag(self, tag: str) -> builtins.list[str]:
        c = await self._conn.collections()
        with self._conn.errors():
            docs = await c.tasks.find({"tags": tag}, {"_id": 1}).sort("_id", 1).to_list()
        return await self.remove([doc["_id"] for doc in docs])

    async def clear(self) -> None:
        c = await self._conn.collections()
        with self._conn.errors():
            for collection in c.all():
                # the fencing counter stays: tokens never go back
                await collection.delete_many({"_id": {"$ne": d.FENCING_COUNTER}})
        self._conn.notify()

    # -- claims, runs and leases -----------------------------------------------------------

    async def claim_due(
        self, owner: str, *, now: datetime, lease: timedelta, limit: int, horizon: datetime | None = None
    ) -> Claim:
        if limit <= 0:
            return Claim()
        c = await self._conn.collections()
        now_us, lease_us, token = d.to_us(now), lease // _US, uuid4().hex
        runs = await self._claim_runs(c, owner, now_us, lease_us, token, limit)
        horizon_us = d.to_us(horizon or now)
        tasks = await self._claim_tasks(c, owner, horizon_us, lease_us, token, limit - len(runs))
        return Claim(tasks=tasks, runs=runs)

    async def _claim_runs(
        self, c: Collections, owner: str, now_us: int, lease_us: int, token: str, limit: int
    ) -> builtins.list[Run]:
        recovered: dict[str, bool] = {}
        order: dict[str, int] = {}
        taken = 0
        with self._conn.errors():
            for _ in range(_CLAIM_ROUNDS):  # another round when rival claimers won candidates
                claimable = {**d.claimable_runs_filter(now_us), "token": {"$ne": token}}
                query = c.runs.find(claimable, {"owner": 1, "token": 1})
                seen = await query.sort([("lease_until", 1), ("_id", 1)]).limit(limit - taken).to_list()
                if not seen:
                    break
                ops = []
                fencing = await self._reserve_tokens(c, len(seen))
                for doc in seen:
                    was_owned = doc.get("owner") is not None
                    recovered[doc["_id"]] = was_owned
                    order.setdefault(doc["_id"], len(order))
                    update = d.claim_run_update(owner, lease_us, token, fencing, recovered=was_owned)
                    fencing += 1
                    ops.append(UpdateOne(d.claim_run_filter(doc["_id"], doc, now_us), update))
                won = (await c.runs.bulk_write(ops, ordered=False)).modified_count
                taken += won
                if won == len(seen) or taken >= limit:
                    break
            won_docs = await c.runs.find({"token": token}).to_list() if taken else []
        runs: list[Run] = []
        for doc in sorted(won_docs, key=lambda doc: order.get(doc["_id"], len(order))):
            try:
                run = d.run_from_document(doc)
            except CorruptRecordError as exc:
                with self._conn.errors():
                    await c.runs.update_one(
                        {"_id": doc["_id"]}, {"$set": {"quarantine": {"error": str(exc)}}}
                    )
                continue
            run.recovered = recovered.get(run.id, False)
            runs.append(run)
        detached = {doc["_id"] for doc in won_docs if doc.get("detached")}
        snapshots = await self._tasks_by_id(c, {run.task_id for run in runs})
        for run in runs:
            # a run of a removed task has none, also when a task of its id was added since
            run.task = None if run.id in detached else snapshots.get(run.task_id)
        return runs

    async def _claim_tasks(
        self, c: Collections, owner: str, horizon_us: int, lease_us: int, token: str, room: int
    ) -> builtins.list[Task]:
        if room <= 0:
            return []
        taken = 0
        with self._conn.errors():
            for _ in range(_CLAIM_ROUNDS):  # another round when rival claimers won candidates
                query = c.tasks.find({**d.due_filter(horizon_us), "token": {"$ne": token}}, {"token": 1})
                seen = await query.sort([("next", 1), ("_id", 1)]).limit(room - taken).to_list()
                if not seen:
                    break
                ops = [
                    UpdateOne(
                        d.claim_task_filter(doc["_id"], doc.get("token"), horizon_us),
                        d.claim_task_update(owner, lease_us, token),
                    )
                    for doc in seen
                ]
                won = (await c.tasks.bulk_write(ops, ordered=False)).modified_count
                taken += won
                if won == len(seen) or taken >= room:
                    break
            won_docs = await c.tasks.find({"token": token}).to_list() if taken else []
        tasks = [task for _, task in await self._decode(won_docs) if task is not None]
        return sorted(tasks, key=lambda t: (t.next_run_time or datetime.max.replace(tzinfo=UTC), t.id))

    async def fire(
        self, owner: str, decisions: Sequence[FireDecision], *, now: datetime, lease: timedelta
    ) -> builtins.list[FireResult]:
        if not decisions:
            return []
        c = await self._conn.collections()
        token = uuid4().hex
        with self._conn.errors():
            query = c.tasks.find(d.held_filter([x.task_id for x in decisions], owner), {"_id": 1})
            held = {doc["_id"] for doc in await query.to_list()}
            planned: dict[str, list[Run]] = {}
            for decision in decisions:
                if decision.task_id in held:
                    runs = {}
                    for fire_time in decision.fire_times:
                        run_id = run_id_for(decision.task_id, fire_time)
                        runs[run_id] = Run(
                            id=run_id,
                            task_id=decision.task_id,
                            fire_time=fire_time.astimezone(UTC),
                            owner=owner,
                            lease_until=now,  # set to the server's lease end once stored
                        )
                    planned[decision.task_id] = list(runs.values())
            new = [r for runs in planned.values() for r in runs]
            existing = await self._insert_runs(c, new, token, lease // _US)
            for run in new:
                if run.id in existing:
                    await adopt(c, run.id, run.task_id)
            results: list[FireResult] = []
            for decision in decisions:
                if decision.task_id in planned:
                    created = [r for r in planned[decision.task_id] if r.id not in existing]
                    result = await self._fire_one(c, owner, decision, created, token, d.to_us(now))
                    if result is not None:
                        results.append(result)
        return results

    async def _insert_runs(
        self, c: Collections, runs: builtins.list[Run], token: str, lease_us: int
    ) -> set[str]:
        """Insert new runs leased until the server's now + ``lease_us`` (their ``lease_until``
        is set to what was stored); the ids that already existed (those fire times are not run
        again)."""
        if not runs:
            return set()
        first = await self._reserve_tokens(c, len(runs))
        for i, run in enumerate(runs):
            run.fencing_token = first + i
        ops = [
            UpdateOne({"_id": run.id, "token": token}, d.leased_run_upsert(run, token, lease_us), upsert=True)
            for run in runs
        ]
        existing: set[str] = set()
        try:
            await c.runs.bulk_write(ops, ordered=False)
        except BulkWriteError as exc:
            if not is_duplicate_key(exc):
                raise
            existing = {runs[i].id for i in duplicate_indexes(exc)}
        stored = c.runs.find({"_id": {"$in": [r.id for r in runs if r.id not in existing]}, "token": token})
        leases = {doc["_id"]: doc["lease_until"] for doc in await stored.to_list()}
        for run in runs:
            if run.id in leases:
                run.lease_until = d.from_us(leases[run.id])
        return existing

    async def _fire_one(
        self,
        c: Collections,
        owner: str,
        decision: FireDecision,
        created: builtins.list[Run],
        token: str,
        now_us: int,
    ) -> FireResult | None:
        task_id = decision.task_id
        next_us = d.opt_us(decision.next_run_time)
        cap = d.run_cap(decision.overlap)
        before = await c.tasks.find_one_and_update(
            {"_id": task_id},
            d.fire_pipeline(owner, len(created), decision.claimed_version, next_us, cap),
            projection=_COUNTERS,
            return_document=ReturnDocument.BEFORE,
        )
        ids = [run.id for run in created]
        if before is None:  # removed by a user meanwhile
            if ids:
                await c.runs.delete_many({"_id": {"$in": ids}, "token": token})
            return None
        admitted = d.granted(before, len(created), cap)
        kept, refused = created[:admitted], created[admitted:]
        # one run at a time (every policy but allow_all): those behind a run wait for it
        leased = len(kept) if cap is None else int(before["running"] == 0 and bool(kept))
        kept, buffered = kept[:leased], kept[leased:]
        if refused:
            await c.runs.delete_many({"_id": {"$in": [r.id for r in refused]}, "token": token})
        if buffered:
            await c.runs.update_many(
                {"_id": {"$in": [r.id for r in buffered]}, "token": token}, d.buffered_update()
            )
            for run in buffered:
                run.owner, run.lease_until, run.fencing_token = None, BUFFERED_UNTIL, 0
        if before.get("claimed_by") != owner:
            # the claim expired and went to another owner since it was checked: hand the fire
            # times this call created to whoever claims next rather than lose them
            if kept:
                waiting = {"$set": {"owner": None, "lease_until": now_us, "token": None}}
                await c.runs.update_many({"_id": {"$in": [r.id for r in kept]}, "token": token}, waiting)
            return None
        if refused:
            await self._recount(c, task_id)
        result = FireResult(
            task_id=task_id, runs=kept, skipped=[r.fire_time for r in refused], buffered=buffered
        )
        next_after = next_us if before.get("version") == decision.claimed_version else before.get("next")
        if before["running"] + admitted <= 0 and next_after is None:
            result.removed = (await c.tasks.delete_one(d.finished_filter(task_id))).deleted_count == 1
        return result

    async def _promote(self, c: Collections, task_id: str, now_us: int) -> None:
        """Make the earliest buffered run of a task claimable from ``now_us`` (a run of it ended)."""
        promoted = await c.runs.find_one_and_update(
            d.next_buffered_filter(task_id), {"$set": {"lease_until": now_us}}, sort=[("fire_time", 1)]
        )
        if promoted is not None:
            self._conn.notify()

    @staticmethod
    async def _recount(c: Collections, task_id: str) -> None:
        """Lower ``running`` to the runs that exist (after a process died between a run's
        deletion and its count), so a stale count cannot hold ``max_instances`` forever."""
        count = await c.runs.count_documents(d.attached_runs_filter(task_id))
        await c.tasks.update_one({"_id": task_id, "running": {"$gt": count}}, {"$set": {"running": count}})

    async def complete(
        self, owner: str, results: Sequence[RunResult], *, history: HistorySettings | None = None
    ) -> set[str]:
        if not results:
            return set()
        c = await self._conn.collections()
        with self._conn.errors():
            done = await asyncio.gather(*(self._complete_one(c, owner, result) for result in results))
        if any(result.retry_at is not None for result in results):
            self._conn.notify()
        if history is not None:
            await self._record_completed(
                owner, [r for r, ok in zip(results, done, strict=True) if ok], history
            )
        return {result.run.id for result, ok in zip(results, done, strict=True) if ok is False}

    async def _record_completed(
        self, owner: str, results: builtins.list[RunResult], settings: HistorySettings
    ) -> None:
        """The completed runs' history, one insert after the runs' own writes (MongoDB has no
        transaction here): best effort, as a failure cannot undo the completions."""
        rows = [row for result in results if (row := history_row(result, owner, settings)) is not None]
        try:
            await history.record_rows(self._conn, rows)
        except StoreError as exc:
            log.warning("run history of %d completed runs not recorded: %r", len(rows), exc)

    async def _complete_one(self, c: Collections, owner: str, result: RunResult) -> bool | None:
        """Whether the run was completed here; ``None`` when it was already (a resend finds it
        waiting under its token), ``False`` when it is gone or another holder has it."""
        run = result.run
        mine = d.held_run_filter(run.id, owner, run.fencing_token)
        if result.retry_at is not None:
            held = await c.runs.find_one_and_update(mine, d.requeue_update(result), projection=_DETACHED)
        else:
            held = await c.runs.find_one_and_delete(mine, projection=_DETACHED)
        if held is None:
            # a second read, only for a run not held: never on the way of a completion
            now = await c.runs.find_one({"_id": run.id}, {"owner": 1, "fencing": 1})
            if (
                now is not None
                and now.get("owner") is None
                and (now.get("fencing") or 0) == run.fencing_token
            ):
                return None
            return False
        # a run its task's removal detached touches no task of its id (another incarnation)
        detached = bool(held.get("detached"))
        if result.retry_at is None and not detached:
            await self._promote(c, run.task_id, d.to_us(result.finished_at))
        if result.dead_letter:
            snapshot = None if detached else (await self._tasks_by_id(c, {run.task_id})).get(run.task_id)
            letter = d.dead_letter_document(DeadLetter.of(result, snapshot))
            await c.dead_letters.replace_one({"_id": run.id}, letter, upsert=True)
        if detached or (result.outcome == RunOutcome.DEFERRED and result.retry_at is not None):
            return True  # a deferral counts nothing, nor does a detached run
        after = await c.tasks.find_one_and_update(
            {"_id": run.task_id},
            d.complete_pipeline(result),
            projection=_COUNTERS,
            return_document=ReturnDocument.AFTER,
        )
        if after is not None and d.is_finished(after):
            await c.tasks.delete_one(d.finished_filter(run.task_id))
        return True

    async def extend(
        self, owner: str, leases: Mapping[str, int], *, now: datetime | None = None, lease: timedelta
    ) -> set[str]:
        if not leases:
            return set()
        c = await self._conn.collections()
        mine = d.held_runs_filter(leases, owner)
        with self._conn.errors():
            await c.runs.update_many(mine, d.extend_update(lease // _US))
            docs = await c.runs.find(mine, {"_id": 1}).to_list()
        return {doc["_id"] for doc in docs}

    async def release(
        self, owner: str, *, leases: Mapping[str, int], task_ids: Collection[str], now: datetime
    ) -> None:
        c = await self._conn.collections()
        with self._conn.errors():
            if leases:
                mine = d.held_runs_filter(leases, owner)
                await c.runs.update_many(mine, d.release_runs_update(d.to_us(now)))
            if task_ids:
                await c.tasks.update_many(d.held_filter(list(task_ids), owner), d.DROP_CLAIM)
        if leases or task_ids:
            self._conn.notify()

    @staticmethod
    async def _reserve_tokens(c: Collections, n: int) -> int:
        """Take ``n`` fencing tokens from the counter; the first of them (the rest follow it)."""
        counter = await c.state.find_one_and_update(
            {"_id": d.FENCING_COUNTER}, d.reserve_tokens(n), upsert=True, return_document=ReturnDocument.AFTER
        )
        assert counter is not None  # upserted
        return int(counter["value"]) - n + 1

    async def enqueue_run(self, task_id: str, *, fire_time: datetime, now: datetime) -> Run | None:
        c = await self._conn.collections()
        with self._conn.errors():
            if await c.tasks.find_one({"_id": task_id, **d.NOT_QUARANTINED}, {"_id": 1}) is None:
                raise TaskNotFoundError(task_id)
        run = Run(
            id=run_id_for(task_id, fire_time),
            task_id=task_id,
            fire_time=fire_time.astimezone(UTC),
            lease_until=now,
        )
        return await self._extras.add_waiting(run)

    async def list_runs(self, task_id: str | None = None) -> builtins.list[Run]:
        c = await self._conn.collections()
        query: d.Doc = (
            dict(d.NOT_QUARANTINED) if task_id is None else {"task_id": task_id, **d.NOT_QUARANTINED}
        )
        with self._conn.errors():
            docs = await c.runs.find(query).sort("_id", 1).to_list()
        runs = []
        for doc in docs:
            try:
                runs.append(d.run_from_document(doc))
            except CorruptRecordError:
                continue  # quarantined by the next claim that meets it
        return runs

    async def next_wakeup(self, *, now: datetime | None = None) -> datetime | None:
        c = await self._conn.collections()
        server = {"server_now": d.SERVER_NOW}  # a lease end is moved from the server's clock to now
        with self._conn.errors():
            due, waiting, held, leased = await asyncio.gather(
                c.tasks.find_one(d.next_task_filter(claimed=False), {"next": 1}, sort=[("next", 1)]),
                c.runs.find_one(
                    {"owner": None, **d.NOT_QUARANTINED}, {"lease_until": 1}, sort=[("lease_until", 1)]
                ),
                c.tasks.find_one(
                    d.next_task_filter(claimed=True), {"claim_until": 1, **server}, sort=[("claim_until", 1)]
                ),
                c.runs.find_one(
                    {"owner": {"$ne": None}, **d.NOT_QUARANTINED},
                    {"lease_until": 1, **server},
                    sort=[("lease_until", 1)],
                ),
            )
        caller = now if now is not None else host_clock()
        times = [
            d.from_us(doc[key])
            for doc, key in ((due, "next"), (waiting, "lease_until"))
            if doc is not None and isinstance(doc.get(key), int)
        ]
        times += [
            caller + (d.from_us(doc[key]) - d.from_us(int(doc["server_now"])))
            for doc, key in ((held, "claim_until"), (leased, "lease_until"))
            if doc is not None and isinstance(doc.get(key), int)
        ]
        return min(times) if times else None

    def wakeups(self) -> AsyncIterator[None]:
        return self._conn.wakeups()

    # -- quarantine, dead letters and shared state ------------------------------------------

    async def quarantined(self) -> builtins.list[QuarantinedRecord]:
        return await self._extras.quarantined()

    async def quarantine(self, task_id: str, error: str) -> bool:
        c = await self._conn.collections()
        with self._conn.errors():
            found = (await c.tasks.update_one({"_id": task_id}, d.quarantine_update(error))).matched_count
        if found:
            log.error("task %r quarantined, kept as stored: %s", task_id, error)
        return found > 0

    async def dead_letters(self, task_id: str | None = None) -> builtins.list[DeadLetter]:
        return await self._extras.dead_letters(task_id)

    async def remove_dead_letters(self, ids: Collection[str]) -> builtins.list[str]:
        return await self._extras.remove_dead_letters(ids)

    async def requeue_dead_letter(self, dead_letter_id: str, *, now: datetime) -> Run | None:
        return await self._extras.requeue_dead_letter(dead_letter_id, now)

    async def get_state(self, key: str) -> StateRecord | None:
        return await self._extras.get_state(key)

    async def put_state(self, key: str, value: dict[str, Any], *, version: int, wake: bool = False) -> bool:
        written = await self._extras.put_state(key, value, version)
        if written and wake:
            self._conn.notify()  # this process's listeners; others hear the change stream
        return written

    # -- run history -----------------------------------------------------------------------

    async def record_history(self, entries: Sequence[HistoryEntry]) -> None:
        refuse_ends_before_1970(entries)
        await history.record(self._conn, entries)

    async def prune_history(self, task_ids: Collection[str], *, before: datetime, keep: int) -> int:
        return await history.prune(self._conn, task_ids, before=before, keep=keep)

    async def run_history(self, query: HistoryQuery) -> tuple[builtins.list[HistoryEntry], str | None]:
        return await history.query(self._conn, query)

    # -- decoding --------------------------------------------------------------------------

    async def _tasks_by_id(self, c: Collections, task_ids: set[str]) -> dict[str, Task]:
        if not task_ids:
            return {}
        with self._conn.errors():
            docs = await c.tasks.find({"_id": {"$in": sorted(task_ids)}, **d.NOT_QUARANTINED}).to_list()
        return {task_id: task for task_id, task in await self._decode(docs) if task is not None}

    async def _decode(self, docs: Sequence[Mapping[str, Any]]) -> builtins.list[tuple[str, Task | None]]:
        """(id, task) of stored documents; one that cannot be decoded is quarantined (kept)."""
        tasks: list[tuple[str, Task | None]] = []
        for doc in docs:
            try:
                tasks.append((doc["_id"], d.task_from_document(doc)))
            except CorruptRecordError as exc:
                tasks.append((doc["_id"], None))
                c = await self._conn.collections()
                with self._conn.errors():
                    await c.tasks.update_one(d.quarantine_filter(doc), d.quarantine_update(str(exc)))
        return tasks


_: type[Store] = MongoStore
"""mypy checks here that ``MongoStore`` satisfies the ``Store`` protocol."""


__all__ = ["MongoStore"]
