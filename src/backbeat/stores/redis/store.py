"""The Redis store: every write is one Lua script call, batched over all items.

Leases are judged by the server's clock (``TIME`` inside the scripts), never a client's.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from backbeat.abc import Store
from backbeat.errors import CorruptRecordError, StoreError, TaskExistsError, TaskNotFoundError
from backbeat.model.history import HistoryEntry, HistoryQuery, HistorySettings, refuse_ends_before_1970
from backbeat.model.overlap import BUFFERED_UNTIL, Overlap, buffers
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
)
from backbeat.model.stored_text import MAX_TEXT_BYTES, refuse_unstorable_ids
from backbeat.stores._common import host_clock
from backbeat.stores.memory import check_changes
from backbeat.stores.redis import codec, layout
from backbeat.stores.redis.codec import Arg, field, iso, opt_us, text
from backbeat.stores.redis.connection import Client, Connection, redact, split_prefix
from backbeat.stores.redis.dead_letters import DeadLetters, letter_arg
from backbeat.stores.redis.history import History, completion_args
from backbeat.stores.redis.keys import Keys, from_us, to_us
from backbeat.stores.redis.layout import LayoutMigration
from backbeat.stores.redis.sharding import Durability, check_durability

log = logging.getLogger("backbeat.stores.redis")

ADD_BATCH = 1000
"""Tasks per ``add.lua`` call: bigger batches would stall the server for other clients."""
READ_BATCH = 500
_US = timedelta(microseconds=1)
_BUFFERED_US = to_us(BUFFERED_UNTIL)
_OUTCOME_FIELDS = {outcome: field(outcome.value) for outcome in RunOutcome}
"""Each outcome as ``complete.lua`` reads it (spelled once: ``Enum.value`` is a Python-level lookup)."""
# read per run, as globals: on Python 3.11 reading a member off its enum class costs ten times more
_SUCCESS = RunOutcome.SUCCESS
_ALLOW_ALL = Overlap.ALLOW_ALL
_FIRES_END = b"\xfe"
"""Ends the fire times of each decision of ``fire.lua``'s argument, before its task id (which may
hold a ``|``): a byte no UTF-8 text holds, so that a count of fire times that does not match
them is refused rather than read with some of them in the task id."""
_END = b"\xff"
"""Ends each decision of ``fire.lua``'s argument and each result of ``complete.lua``'s (a batch's
in one argument: redis-py encodes each argument in Python): a byte no UTF-8 text holds, so no
task id can (a NUL could: a Redis store of 0.1.0 kept ids holding one)."""


class RedisStore:
    """A store in Redis (or Redis Cluster: every key shares the hash tag ``{prefix}``).

    Every key starts with the ``prefix`` (else the URL's ``?prefix=``, else ``backbeat``).
    :meth:`open` checks the key layout version, and migrates an older layout (:mod:`.layout`).
    ``client_options`` go to :func:`redis.asyncio.from_url` (``max_connections``,
    ``health_check_interval``, ``socket_timeout``, ...); a pool of ``max_connections`` (the
    option, or the URL's) makes a call wait for a free connection when every one is in use
    (:class:`~backbeat.stores.redis.pool.WaitingConnectionPool`). A ``client``
    given is used as is (it must not decode responses) and is not closed by :meth:`close`.

    :meth:`close` lets the adds in flight end for ``CLOSE_TIMEOUT`` (5 s) at most, then fails
    those left, and the adds made meanwhile, with :class:`~backbeat.errors.StoreClosedError`;
    nothing connects after it began. Used from another event loop than the one it was opened on
    (a second ``asyncio.run``), the store starts afresh there, dropping the old loop's client and
    connections without awaiting them (a given client must itself work on the new loop).
    """

    layout_migrations: ClassVar[tuple[LayoutMigration, ...]] = layout.MIGRATIONS
    """The key layouts this store knows, oldest first: a store is brought up to the last one at open."""

    def __init__(
        self,
        url: str = "redis://localhost:6379/0",
        *,
        prefix: str | None = None,
        client: Client | None = None,
        durability: Durability = "leader",
        **client_options: Any,
    ) -> None:
        url, url_prefix = split_prefix(url)
        self.keys = Keys(prefix or url_prefix or "backbeat")
        acknowledged = check_durability(durability) == "replica"
        self._conn = Connection(url, self.keys, client, client_options, acknowledged=acknowledged)
        self._dead = DeadLetters(self._conn, self.keys)
        self._history = History(self._conn, self.keys)

    @classmethod
    def from_params(
        cls,
        host: str = "localhost",
        port: int = 6379,
        db: int = 0,
        *,
        password: str | None = None,
        username: str | None = None,
        ssl: bool = False,
        connection_pool_size: int = 10,
        health_check_interval: int = 30,
        prefix: str = "backbeat",
        **client_options: Any,
    ) -> RedisStore:
        """A store from connection settings instead of a URL."""
        scheme = "rediss" if ssl else "redis"
        return cls(
            f"{scheme}://{host}:{port}/{db}",
            prefix=prefix,
            password=password,
            username=username,
            max_connections=connection_pool_size,
            health_check_interval=health_check_interval,
            **client_options,
        )

    @property
    def url(self) -> str:
        return self._conn.url

    def __repr__(self) -> str:
        return f"RedisStore({redact(self.url)!r}, prefix={self.keys.prefix!r})"

    async def open(self) -> None:
        await self._conn.open()
        where = f"Redis store at {redact(self.url)} (prefix {self.keys.prefix!r})"
        try:
            with self._conn.errors():  # a migration may take long: its commands are not bounded
                await layout.migrate(self._conn.client, self.keys, self.layout_migrations, where)
        except BaseException:
            await self._conn.close()  # a refused or unmigrated store is not left half open
            raise

    async def close(self) -> None:
        await self._conn.close()

    # -- tasks -----------------------------------------------------------------------------

    async def add(self, tasks: Sequence[Task], *, replace: bool = False) -> None:
        if not tasks:
            return
        if len(tasks) <= ADD_BATCH:  # one script call, awaited in place: no task, no extra loop turn
            mode = "1" if replace else "0"
            if len(tasks) == 1:  # a lone add (the most common): no comprehension's frame
                task_id = tasks[0].id
                # most ids (ASCII, no NUL, short) pass without the check's call: 1k instructions
                if not task_id or "\x00" in task_id or not task_id.isascii() or len(task_id) > MAX_TEXT_BYTES:
                    refuse_unstorable_ids(tasks)
                reply = await self._conn.add(mode, codec.task_arg(tasks[0]))
            else:
                refuse_unstorable_ids(tasks)
                reply = await self._conn.add(mode, *[codec.task_arg(task) for task in tasks])
            if reply:  # (the ids stored already)
                self._check_added(reply)
            return
        # Batches keep the server responsive; the next one is encoded while the server runs
        # the previous one. Several batches are atomic only in checking every id first.
        refuse_unstorable_ids(tasks)
        pending: asyncio.Future[Any] | None = None
        if not replace:
            pending = asyncio.ensure_future(self._conn.run("exists", *(task.id for task in tasks)))
        try:
            for start in range(0, len(tasks), ADD_BATCH):
                args: list[Arg] = ["1" if replace else "0"]
                args += [codec.task_arg(task) for task in tasks[start : start + ADD_BATCH]]
                if pending is not None:
                    self._check_added(await pending)
                pending = asyncio.ensure_future(self._conn.run("add", *args))
                await asyncio.sleep(0)  # let it send before the next batch is encoded
            assert pending is not None
            self._check_added(await pending)
        finally:
            if pending is not None and not pending.done():
                pending.cancel()

    @staticmethod
    def _check_added(reply: Any) -> None:
        existing = [text(task_id) for task_id in reply]
        if existing:
            raise TaskExistsError(existing)

    async def existing(self, task_ids: Collection[str]) -> builtins.list[str]:
        """Which of ``task_ids`` are stored (quarantined records too)."""
        if not task_ids:
            return []
        return [text(task_id) for task_id in await self._conn.run("exists", *task_ids)]

    def errors(self) -> contextlib.AbstractContextManager[None]:
        """Raise the driver errors of a call on this store's client as backbeat's store errors."""
        return self._conn.errors()

    async def get(self, task_id: str) -> Task | None:
        snapshots, _ = await self._conn.run("read", "ids", task_id)
        tasks = await self._decode(snapshots)
        return tasks[0][1] if tasks else None

    async def list(
        self, filter: TaskFilter | None = None, *, cursor: str | None = None, limit: int | None = None
    ) -> tuple[builtins.list[Task], str | None]:
        # the script takes the index key without the prefix it adds itself
        if filter is not None and filter.tag is not None:
            index = f"tag:{filter.tag}"
        elif filter is not None and filter.orphaned:
            index = "orphaned"
        else:
            index = "ids"
        page: list[Task] = []
        after = cursor or ""
        # an index holds exactly the matches (filtered only by it): a page needs one task more, no batch
        indexed = filter is None or filter in (TaskFilter(tag=filter.tag), TaskFilter(orphaned=True))
        batch = min(READ_BATCH, limit + 1) if limit is not None and indexed else READ_BATCH
        while True:
            snapshots, more = await self._conn.run("read", "scan", index, after, batch)
            for task_id, task in await self._decode(snapshots):
                after = task_id
                if task is None or (filter is not None and not filter.matches(task)):
                    continue
                if limit is not None and len(page) >= limit:
                    # another match exists: the page ends at its last task
                    return page, page[-1].id if page else cursor
                page.append(task)
            if not more:
                return page, None

    async def update(self, task_id: str, **changes: Any) -> Task:
        changes = check_changes(changes)
        for _ in range(100):
            current = await self.get(task_id)
            if current is None:
                raise TaskNotFoundError(task_id)
            task = current.copy(**changes)
            reply = await self._conn.run(
                "update",
                task_id,
                current.version,
                codec.document(task),
                "1" if "next_run_time" in changes else "0",
                opt_us(task.next_run_time),
                codec.flags(task),
                task.options.max_instances,
                codec.tags_arg(task.tags),
            )
            status = text(reply[0])
            if status == "missing":
                raise TaskNotFoundError(task_id)
            if status == "ok":
                updated = (await self._decode(reply[1]))[0][1]
                assert updated is not None
                return updated
        raise StoreError(f"task {task_id!r} kept changing while it was updated")

    async def remove(self, task_ids: Collection[str]) -> builtins.list[str]:
        if not task_ids:
            return []
        return [text(task_id) for task_id in await self._conn.run("remove", _BUFFERED_US, "ids", *task_ids)]

    async def remove_by_tag(self, tag: str) -> builtins.list[str]:
        return [text(task_id) for task_id in await self._conn.run("remove", _BUFFERED_US, "tag", tag)]

    async def clear(self) -> None:
        while await self._conn.run("clear", READ_BATCH):
            pass
        await self._history.clear()

    # -- claims, runs and leases -----------------------------------------------------------

    async def claim_due(
        self, owner: str, *, now: datetime, lease: timedelta, limit: int, horizon: datetime | None = None
    ) -> Claim:
        if limit <= 0:
            return Claim()
        flat_runs, run_snapshots, snapshots, until = await self._conn.run(
            "claim", owner, to_us(now), lease // _US, limit, to_us(horizon or now)
        )
        runs = codec.claimed_runs(flat_runs, owner, from_us(until))
        for run, (_, task) in zip(runs, await self._decode(run_snapshots), strict=True):
            run.task = task
        tasks = [task for _, task in await self._decode(snapshots) if task is not None]
        return Claim(tasks=tasks, runs=runs)

    async def fire(
        self, owner: str, decisions: Sequence[FireDecision], *, now: datetime, lease: timedelta
    ) -> builtins.list[FireResult]:
        if not decisions:
            return []
        # in one argument: each decision's head and fire times, _FIRES_END, its task id, _END
        packed: list[bytes] = []
        times: list[list[str]] = []
        for decision in decisions:
            due = decision.fire_times
            # one fire time (most decisions) without a comprehension's frame
            fire_times = [iso(due[0])] if len(due) == 1 else [iso(fire_time) for fire_time in due]
            times.append(fire_times)
            room = -1 if decision.overlap == _ALLOW_ALL else buffers(decision.overlap)
            spelled = "|".join(fire_times) + "|" if fire_times else ""
            packed += (
                f"{len(fire_times)}|{decision.claimed_version}|{opt_us(decision.next_run_time)}|{room}|"
                f"{spelled}".encode(),
                _FIRES_END,
                decision.task_id.encode(),
                _END,
            )
        args = (owner, lease // _US, _BUFFERED_US, b"".join(packed))
        until_us, reply, token = await self._conn.run("fire", *args)
        until, statuses = from_us(until_us), text(reply).split(",")
        results: list[FireResult] = []
        for decision, fire_times, status in zip(decisions, times, statuses, strict=True):
            if not status:
                continue  # no longer claimed by this owner
            task_id = decision.task_id
            result = FireResult(task_id=task_id, runs=[], removed=status[0] == "R")
            # the decision's own times, not its ISO text parsed back: the same UTC instants
            for at, fire_time, letter in zip(decision.fire_times, fire_times, status[1:], strict=True):
                if letter == "c":
                    result.runs.append(
                        Run(
                            id=f"{task_id}@{fire_time}",
                            task_id=task_id,
                            fire_time=at.astimezone(UTC),
                            owner=owner,
                            lease_until=until,
                            fencing_token=token,
                        )
                    )
                    token += 1
                elif letter == "b":
                    run = Run(
                        id=f"{task_id}@{fire_time}",
                        task_id=task_id,
                        fire_time=at.astimezone(UTC),
                        lease_until=BUFFERED_UNTIL,
                    )
                    result.buffered.append(run)
                elif letter == "s":
                    result.skipped.append(at.astimezone(UTC))
            results.append(result)
        return results

    async def complete(
        self,
        owner: str,
        results: Sequence[RunResult],
        *,
        history: HistorySettings | None = None,
        entry_tokens: Sequence[int] | None = None,
    ) -> set[str]:
        """See :meth:`.Store.complete`; ``entry_tokens`` are the fencing tokens the history
        entries' ids spell, one per result (a sharded store's own), by default the results'."""
        if not results:
            return set()
        packed: list[bytes] = []  # in one argument, each followed by _END (see complete.lua)
        letters: list[Arg] = []
        ends: list[int] = []  # for the history entries (a conversion costs 3k instructions)
        for result in results:
            run = result.run
            finished = to_us(result.finished_at)
            ends.append(finished)
            if result.outcome is _SUCCESS and result.retry_at is None and not result.dead_letter:
                # most runs: no lookup keyed by the enum (its hash goes through a slot wrapper)
                packed.append(f"0|{finished}||success|0|{run.fencing_token}|{run.id}".encode())
                continue
            failed = "1" if result.outcome == RunOutcome.FAILURE else "0"
            retry_at = opt_us(result.retry_at)
            dead = "1" if result.dead_letter else "0"
            outcome = _OUTCOME_FIELDS[result.outcome]
            packed.append(
                f"{failed}|{finished}|{retry_at}|{outcome}|{dead}|{run.fencing_token}|{run.id}".encode()
            )
            if result.dead_letter:
                letters.append(letter_arg(DeadLetter.of(result, None)))
        if history is not None:
            own = entry_tokens is None
            if entry_tokens is None:
                entry_tokens = [result.run.fencing_token for result in results]
            letters += completion_args(results, history, entry_tokens, owner, ends, own_tokens=own)
        args = (owner, _BUFFERED_US, len(results), "" if history is None else "1", _END.join(packed) + _END)
        return {text(run_id) for run_id in await self._conn.run("complete", *args, *letters)}

    async def extend(
        self, owner: str, leases: Mapping[str, int], *, now: datetime | None = None, lease: timedelta
    ) -> set[str]:
        if not leases:
            return set()
        held = await self._conn.run("extend", owner, lease // _US, *codec.token_pairs(leases))
        return {text(run_id) for run_id in held}

    async def release(
        self, owner: str, *, leases: Mapping[str, int], task_ids: Collection[str], now: datetime
    ) -> None:
        if leases or task_ids:
            pairs = codec.token_pairs(leases)
            await self._conn.run("release", owner, to_us(now), len(leases), *pairs, *task_ids)

    async def enqueue_run(self, task_id: str, *, fire_time: datetime, now: datetime) -> Run | None:
        fire = iso(fire_time)
        status = text(await self._conn.run("enqueue", task_id, fire, to_us(now)))
        if status == "missing":
            raise TaskNotFoundError(task_id)
        if status != "ok":
            return None
        return Run(
            id=f"{task_id}@{fire}",
            task_id=task_id,
            fire_time=datetime.fromisoformat(fire),
            owner=None,
            lease_until=now,
        )

    async def list_runs(self, task_id: str | None = None) -> builtins.list[Run]:
        client = self._conn.client
        async with self._conn.calls():
            members: list[Any] = []
            for index in (self.keys.waiting, self.keys.leases):
                members += await client.zrange(index, 0, -1, withscores=True)
            leases = {text(run_id): from_us(int(score)) for run_id, score in members}
            stored: list[Any] = []
            detached: set[str] = set()
            if leases:
                stored = await client.mget([self.keys.run(run_id) for run_id in leases])
                detached = {text(run_id) for run_id in await client.smembers(self.keys.detached)}
        runs: list[Run] = []
        for (run_id, lease_until), packed in zip(leases.items(), stored, strict=True):
            if packed is not None:  # else completed between the two reads
                run = codec.stored_run(run_id, packed, lease_until)
                if task_id is None or run.task_id == task_id:
                    run.detached = run_id in detached
                    runs.append(run)
        return runs

    async def next_wakeup(self, *, now: datetime | None = None) -> datetime | None:
        earliest = await self._conn.run("next", to_us(now if now is not None else host_clock()))
        return None if earliest is None else from_us(earliest)

    def wakeups(self) -> AsyncIterator[None]:
        return self._conn.wakeups()

    # -- quarantine ------------------------------------------------------------------------

    async def quarantined(self) -> builtins.list[QuarantinedRecord]:
        client = self._conn.client
        async with self._conn.calls():
            errors: dict[Any, Any] = await client.hgetall(self.keys.quarantine)
            ids = [text(task_id) for task_id in errors]
            raws = await client.hmget(self.keys.tasks, ids) if ids else []
        records = [
            QuarantinedRecord(key=task_id, raw=codec.stored_document(raw), error=text(error))
            for task_id, raw, error in zip(ids, raws, errors.values(), strict=True)
        ]
        return sorted(records, key=lambda record: record.key)

    async def quarantine(self, task_id: str, error: str) -> bool:
        found: int = await self._conn.run("quarantine", task_id, error)
        if found:
            log.error("task %r quarantined, kept as stored: %s", task_id, error)
        return bool(found)

    # -- dead letters and shared state -----------------------------------------------------

    async def dead_letters(self, task_id: str | None = None) -> builtins.list[DeadLetter]:
        letters = await self._dead.read()
        return [letter for letter in letters if task_id is None or letter.task_id == task_id]

    async def remove_dead_letters(self, ids: Collection[str]) -> builtins.list[str]:
        return await self._dead.remove(ids)

    async def requeue_dead_letter(self, dead_letter_id: str, *, now: datetime) -> Run | None:
        return await self._dead.requeue(dead_letter_id, now, self.add)

    async def get_state(self, key: str) -> StateRecord | None:
        return await self._dead.get_state(key)

    async def put_state(self, key: str, value: dict[str, Any], *, version: int, wake: bool = False) -> bool:
        return await self._dead.put_state(key, value, version, wake=wake)

    async def _decode(self, snapshots: Sequence[Any]) -> builtins.list[tuple[str, Task | None]]:
        """(id, task) of packed snapshots; a record that cannot be decoded is quarantined (kept)."""
        tasks: list[tuple[str, Task | None]] = []
        corrupt: list[Arg] = []
        for raw_id, live, doc in codec.snapshots(snapshots):
            task_id = raw_id.decode()
            try:
                tasks.append((task_id, codec.task_from(raw_id, live, doc)))
            except CorruptRecordError as exc:
                tasks.append((task_id, None))
                corrupt += [task_id, str(exc)]
        if corrupt:
            for bad_id, error in zip(corrupt[::2], corrupt[1::2], strict=True):
                log.error("task %r quarantined, kept as stored: %s", bad_id, error)
            await self._conn.run("quarantine", *corrupt)
        return tasks

    # -- run history -----------------------------------------------------------------------

    async def record_history(self, entries: Sequence[HistoryEntry]) -> None:
        refuse_ends_before_1970(entries)
        await self._history.record(entries)

    async def prune_history(self, task_ids: Collection[str], *, before: datetime, keep: int) -> int:
        return await self._history.prune(task_ids, before=before, keep=keep)

    async def run_history(self, query: HistoryQuery) -> tuple[builtins.list[HistoryEntry], str | None]:
        return await self._history.query(query)


_: type[Store] = RedisStore
"""mypy checks here that ``RedisStore`` satisfies the ``Store`` protocol."""
