"""The sharded store on Redis Cluster: ``shards`` single-slot Redis stores behind one facade.

Each shard is a :class:`RedisStore` of prefix ``P:i`` on one :class:`RedisCluster` client, so
its keys share the hash tag ``{P:i}`` and its Lua scripts run whole in one slot: the lease and
fencing rules hold per shard exactly as on one node. A task and everything of it (runs, claim,
dead letters) live in the shard its id hashes to (:mod:`.sharding`); a call about given ids goes
to their shards at once, a listing or a claim asks every shard concurrently and merges.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import heapq
import itertools
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, TypeVar

import redis.asyncio
from redis.asyncio.cluster import ClusterNode, RedisCluster

from backbeat.abc import Store
from backbeat.errors import ConfigurationError, TaskExistsError
from backbeat.model.history import HistoryEntry, HistoryQuery, HistorySettings, refuse_ends_before_1970
from backbeat.model.records import (
    Claim,
    DeadLetter,
    FireDecision,
    FireResult,
    QuarantinedRecord,
    Run,
    RunResult,
    StateRecord,
    Task,
    TaskFilter,
)
from backbeat.model.stored_text import refuse_unstorable_ids
from backbeat.stores.redis import wakeups
from backbeat.stores.redis.connection import DEFAULT_OPTIONS, redact
from backbeat.stores.redis.fanout import claim_by_turns, merge_history_pages, merge_task_pages
from backbeat.stores.redis.keys import Keys
from backbeat.stores.redis.sharding import (
    DEFAULT_SHARDS,
    ClusterTarget,
    Durability,
    ShardTokens,
    check_durability,
    check_shards,
    parse_cluster_url,
    shard_of,
    shard_prefix,
    shards_key,
    task_of_run,
)
from backbeat.stores.redis.store import RedisStore

T = TypeVar("T")
K = TypeVar("K")


class ShardedRedisStore:
    """A store spread over ``shards`` hash-tagged shards of a Redis Cluster.

    Args:
        url: ``redis+cluster://host:port[,host:port...]/?prefix=P&shards=N`` (and
            ``&durability=replica``); or give ``startup_nodes``.
        startup_nodes: ``(host, port)`` pairs of some cluster nodes (the client finds the rest).
        prefix: the keys' prefix (default: the URL's, else ``backbeat``).
        shards: how many shards a new store gets (default :data:`DEFAULT_SHARDS`); an existing
            store keeps the count it was made with, and a different one is refused.
        durability: ``replica`` makes every write wait until one replica of its master has it
            (``WAIT 1``), so a failover right after it cannot lose it.
        client_options: passed to :class:`redis.asyncio.cluster.RedisCluster`.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        startup_nodes: Sequence[tuple[str, int]] | None = None,
        prefix: str | None = None,
        shards: int | None = None,
        durability: Durability | None = None,
        client: RedisCluster | None = None,
        **client_options: Any,
    ) -> None:
        target = parse_cluster_url(url) if url is not None else ClusterTarget(startup_nodes=())
        nodes = tuple(startup_nodes or target.startup_nodes)
        if not nodes and client is None:
            raise ConfigurationError("a Redis Cluster store needs a URL, startup_nodes or a client")
        self.prefix = prefix or target.prefix or "backbeat"
        Keys(self.prefix)  # validates it
        self.wanted_shards = check_shards(shards) if shards is not None else target.shards
        self.durability: Durability = check_durability(durability or target.durability)
        self.startup_nodes = nodes
        auth: dict[str, Any] = {"username": target.username, "password": target.password}
        self._auth = {k: v for k, v in auth.items() if v is not None} | ({"ssl": True} if target.ssl else {})
        self._options = client_options
        self._own_client = client is None
        self._client = client
        self._shards: builtins.list[RedisStore] = []
        self._opening: asyncio.Lock | None = None
        self._closed = asyncio.Event()
        self._rotation = itertools.count()
        self._listeners: dict[str, redis.asyncio.Redis] = {}
        """One client per node that wake-ups were listened for on (closed with the store)."""

    def __repr__(self) -> str:
        nodes = ",".join(f"{host}:{port}" for host, port in self.startup_nodes)
        return f"ShardedRedisStore({nodes!r}, prefix={self.prefix!r}, shards={self.shard_count})"

    @property
    def shard_count(self) -> int | None:
        """Shards of the opened store (``None`` before :meth:`open`)."""
        return len(self._shards) or None

    @property
    def client(self) -> RedisCluster:
        if self._client is None:
            # the cluster client retries and follows a failover itself: no retry of a node's connection
            options = {k: v for k, v in DEFAULT_OPTIONS.items() if k != "retry"} | self._auth | self._options
            nodes = [ClusterNode(host, port) for host, port in self.startup_nodes]
            self._client = RedisCluster(startup_nodes=nodes, **options)
        return self._client

    @property
    def url(self) -> str:
        nodes = ",".join(f"{host}:{port}" for host, port in self.startup_nodes)
        return f"redis+cluster://{nodes}/?prefix={self.prefix}"

    async def open(self) -> None:
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:  # concurrent first calls open it once
            if not self._shards:
                await self._open()

    async def _open(self) -> None:
        client = self.client
        self._closed.clear()
        count = await self._shard_count(client)
        shards = [
            RedisStore(
                self.url,
                prefix=shard_prefix(self.prefix, i, count),
                client=client,
                durability=self.durability,
            )
            for i in range(count)
        ]
        await asyncio.gather(*(shard.open() for shard in shards))
        self._shards = shards

    async def _shard_count(self, client: RedisCluster) -> int:
        """The stored shard count; a new store records the wanted one (or the default)."""
        key = shards_key(self.prefix)
        probe = RedisStore(self.url, prefix=self.prefix, client=client)
        with probe.errors():
            await client.set(key, str(self.wanted_shards or DEFAULT_SHARDS), nx=True)
            raw = await client.get(key)
        stored = int(raw or 0)
        if self.wanted_shards is not None and stored != self.wanted_shards:
            raise ConfigurationError(
                f"the Redis Cluster store {self.prefix!r} has {stored} shards, not the {self.wanted_shards} "
                f"asked for: drop shards= (or ask for {stored}), or move the tasks into a new store "
                "(see the README on resharding)"
            )
        return stored

    async def close(self) -> None:
        self._closed.set()
        shards, self._shards = self._shards, []
        await asyncio.gather(*(shard.close() for shard in shards))
        listeners, self._listeners = self._listeners, {}
        for listener in listeners.values():
            with contextlib.suppress(Exception):
                await listener.aclose()
        if self._own_client and self._client is not None:
            client, self._client = self._client, None
            with contextlib.suppress(Exception):
                await client.aclose()

    # -- routing ---------------------------------------------------------------------------

    async def _ready(self) -> builtins.list[RedisStore]:
        if not self._shards:
            await self.open()
        return self._shards

    async def _shard(self, key: str) -> RedisStore:
        shards = await self._ready()
        return shards[shard_of(key, len(shards))]

    async def _grouped(self, items: Iterable[T], key: Callable[[T], str]) -> dict[int, builtins.list[T]]:
        """``items`` by the index of their shard."""
        shards = await self._ready()
        groups: dict[int, builtins.list[T]] = defaultdict(list)
        for item in items:
            groups[shard_of(key(item), len(shards))].append(item)
        return groups

    def _tokens_out(self, runs: Iterable[Run], shard: int) -> None:
        tokens = ShardTokens(len(self._shards))
        for run in runs:
            run.fencing_token = tokens.outward(run.fencing_token, shard)

    def _leases_in(self, leases: Iterable[tuple[str, int]], shard: int) -> dict[str, int]:
        tokens = ShardTokens(len(self._shards))
        return {run_id: tokens.inward(token, shard) for run_id, token in leases}

    async def _each(self, call: Callable[[RedisStore], Awaitable[K]]) -> builtins.list[K]:
        """``call`` on every shard at once; the answers in shard order."""
        return list(await asyncio.gather(*(call(shard) for shard in await self._ready())))

    # -- tasks -----------------------------------------------------------------------------

    async def add(self, tasks: Sequence[Task], *, replace: bool = False) -> None:
        refuse_unstorable_ids(tasks)  # (before a batch over several shards writes any of them)
        shards = await self._ready()
        groups = {shards[i]: part for i, part in (await self._grouped(tasks, lambda task: task.id)).items()}
        if replace or len(groups) == 1:
            await asyncio.gather(*(shard.add(part, replace=replace) for shard, part in groups.items()))
            return
        # one batch over several shards: checked first, then written shard by shard, and
        # withdrawn again if a concurrent add took one of its ids meanwhile
        ids = [task.id for task in tasks]
        taken = [i for i, n in Counter(ids).items() if n > 1]
        for shard, part in groups.items():
            taken += await shard.existing([task.id for task in part])
        if taken:
            raise TaskExistsError(taken)
        written: builtins.list[tuple[RedisStore, builtins.list[Task]]] = []
        try:
            for shard, part in groups.items():
                await shard.add(part)
                written.append((shard, part))
        except BaseException:
            # a taken id, a lost shard, a cancel: what was written of the batch is taken back
            # (best effort: a shard that cannot be reached keeps its part, said in the README)
            for shard, part in written:
                with contextlib.suppress(Exception):
                    await asyncio.shield(shard.remove([task.id for task in part]))
            raise

    async def get(self, task_id: str) -> Task | None:
        return await (await self._shard(task_id)).get(task_id)

    async def list(
        self, filter: TaskFilter | None = None, *, cursor: str | None = None, limit: int | None = None
    ) -> tuple[builtins.list[Task], str | None]:
        pages = await self._each(lambda shard: shard.list(filter, cursor=cursor, limit=limit))
        return merge_task_pages(pages, limit, cursor)

    async def update(self, task_id: str, **changes: Any) -> Task:
        return await (await self._shard(task_id)).update(task_id, **changes)

    async def remove(self, task_ids: Collection[str]) -> builtins.list[str]:
        shards = await self._ready()
        groups = await self._grouped(dict.fromkeys(task_ids), lambda task_id: task_id)
        removed = await asyncio.gather(*(shards[i].remove(part) for i, part in groups.items()))
        return [task_id for part in removed for task_id in part]

    async def remove_by_tag(self, tag: str) -> builtins.list[str]:
        return sorted(itertools.chain(*await self._each(lambda shard: shard.remove_by_tag(tag))))

    async def clear(self) -> None:
        await self._each(lambda shard: shard.clear())

    # -- claims, runs and leases -----------------------------------------------------------

    async def claim_due(
        self, owner: str, *, now: datetime, lease: timedelta, limit: int, horizon: datetime | None = None
    ) -> Claim:
        shards = await self._ready()
        first = next(self._rotation) % len(shards)
        return await claim_by_turns(
            shards, first, owner, now=now, lease=lease, limit=limit, horizon=horizon, leased=self._tokens_out
        )

    async def fire(
        self, owner: str, decisions: Sequence[FireDecision], *, now: datetime, lease: timedelta
    ) -> builtins.list[FireResult]:
        shards = await self._ready()
        groups = await self._grouped(decisions, lambda decision: decision.task_id)
        order = list(groups)
        fired = await asyncio.gather(*(shards[i].fire(owner, groups[i], now=now, lease=lease) for i in order))
        for i, part in zip(order, fired, strict=True):
            self._tokens_out((run for result in part for run in result.runs), i)
        return [result for part in fired for result in part]

    async def complete(
        self, owner: str, results: Sequence[RunResult], *, history: HistorySettings | None = None
    ) -> set[str]:
        shards = await self._ready()
        groups = await self._grouped(results, lambda result: result.run.task_id)
        tokens = ShardTokens(len(shards))

        def inward(result: RunResult, shard: int) -> RunResult:
            run = replace(result.run, fencing_token=tokens.inward(result.run.fencing_token, shard))
            return replace(result, run=run)

        lost = await asyncio.gather(
            *(
                shards[i].complete(
                    owner,
                    [inward(result, i) for result in part],
                    history=history,
                    # the entries' ids spell the tokens the engine holds, as record_history's do
                    entry_tokens=[result.run.fencing_token for result in part],
                )
                for i, part in groups.items()
            )
        )
        return set().union(*lost)

    async def extend(
        self, owner: str, leases: Mapping[str, int], *, now: datetime | None = None, lease: timedelta
    ) -> set[str]:
        shards = await self._ready()
        groups = await self._grouped(leases.items(), lambda item: task_of_run(item[0]))
        held = await asyncio.gather(
            *(
                shards[i].extend(owner, self._leases_in(part, i), now=now, lease=lease)
                for i, part in groups.items()
            )
        )
        return set().union(*held)

    async def release(
        self, owner: str, *, leases: Mapping[str, int], task_ids: Collection[str], now: datetime
    ) -> None:
        shards = await self._ready()
        runs = await self._grouped(leases.items(), lambda item: task_of_run(item[0]))
        tasks = await self._grouped(task_ids, lambda task_id: task_id)
        await asyncio.gather(
            *(
                shards[i].release(
                    owner, leases=self._leases_in(runs.get(i, ()), i), task_ids=tasks.get(i, ()), now=now
                )
                for i in {*runs, *tasks}
            )
        )

    async def enqueue_run(self, task_id: str, *, fire_time: datetime, now: datetime) -> Run | None:
        return await (await self._shard(task_id)).enqueue_run(task_id, fire_time=fire_time, now=now)

    async def list_runs(self, task_id: str | None = None) -> builtins.list[Run]:
        shards = await self._ready()
        if task_id is not None:
            shard = shard_of(task_id, len(shards))
            runs = await shards[shard].list_runs(task_id)
            self._tokens_out(runs, shard)
            return runs
        parts = await self._each(lambda shard: shard.list_runs())
        for i, part in enumerate(parts):
            self._tokens_out(part, i)
        return [run for part in parts for run in part]

    async def next_wakeup(self, *, now: datetime | None = None) -> datetime | None:
        times = await self._each(lambda shard: shard.next_wakeup(now=now))
        return min((t for t in times if t is not None), default=None)

    async def wakeups(self) -> AsyncIterator[None]:
        await self._ready()  # the channels follow the stored shard count
        async for _ in wakeups.listen(self._any_node, self._channels(), self._closed):
            yield

    def _channels(self) -> builtins.list[str]:
        count = len(self._shards) or self.wanted_shards or DEFAULT_SHARDS
        return [Keys(shard_prefix(self.prefix, i, count)).wakeup for i in range(count)]

    def _any_node(self) -> redis.asyncio.Redis:
        """A client of one node, another at each reconnection: a PUBLISH on any node of a
        cluster reaches the subscribers of every node."""
        nodes = [(node.host, int(node.port)) for node in self.client.get_nodes()] or list(self.startup_nodes)
        host, port = nodes[next(self._rotation) % len(nodes)]
        name = f"{host}:{port}"
        if name not in self._listeners:
            self._listeners[name] = redis.asyncio.Redis(host=host, port=port, **DEFAULT_OPTIONS, **self._auth)
        return self._listeners[name]

    async def quarantined(self) -> builtins.list[QuarantinedRecord]:
        parts = await self._each(lambda shard: shard.quarantined())
        return sorted((record for part in parts for record in part), key=lambda record: record.key)

    async def quarantine(self, task_id: str, error: str) -> bool:
        return await (await self._shard(task_id)).quarantine(task_id, error)

    # -- dead letters and shared state -----------------------------------------------------

    async def dead_letters(self, task_id: str | None = None) -> builtins.list[DeadLetter]:
        if task_id is not None:
            return await (await self._shard(task_id)).dead_letters(task_id)
        parts = await self._each(lambda shard: shard.dead_letters())
        return list(heapq.merge(*parts, key=lambda letter: (letter.failed_at, letter.id)))

    async def remove_dead_letters(self, ids: Collection[str]) -> builtins.list[str]:
        shards = await self._ready()
        groups = await self._grouped(dict.fromkeys(ids), task_of_run)
        removed = await asyncio.gather(*(shards[i].remove_dead_letters(part) for i, part in groups.items()))
        return [letter_id for part in removed for letter_id in part]

    async def requeue_dead_letter(self, dead_letter_id: str, *, now: datetime) -> Run | None:
        return await (await self._shard(task_of_run(dead_letter_id))).requeue_dead_letter(
            dead_letter_id, now=now
        )

    async def get_state(self, key: str) -> StateRecord | None:
        return await (await self._shard(key)).get_state(key)

    async def put_state(self, key: str, value: dict[str, Any], *, version: int, wake: bool = False) -> bool:
        return await (await self._shard(key)).put_state(key, value, version=version, wake=wake)

    # -- run history ------------------------------------------------------------------------

    async def record_history(self, entries: Sequence[HistoryEntry]) -> None:
        refuse_ends_before_1970(entries)  # (before a batch over several shards writes any of them)
        shards = await self._ready()
        groups = await self._grouped(entries, lambda entry: entry.task_id)
        await asyncio.gather(*(shards[i].record_history(part) for i, part in groups.items()))

    async def prune_history(self, task_ids: Collection[str], *, before: datetime, keep: int) -> int:
        shards = await self._ready()
        groups = await self._grouped(task_ids, lambda task_id: task_id)
        # every shard also trims a bounded batch of old entries of any of its tasks
        pruned = await asyncio.gather(
            *(
                shard.prune_history(groups.get(i, []), before=before, keep=keep)
                for i, shard in enumerate(shards)
            )
        )
        return sum(pruned)

    async def run_history(self, query: HistoryQuery) -> tuple[builtins.list[HistoryEntry], str | None]:
        if query.task_id is not None:
            return await (await self._shard(query.task_id)).run_history(query)
        pages = await self._each(lambda shard: shard.run_history(query))
        return merge_history_pages(pages, query.limit)


_: type[Store] = ShardedRedisStore
"""mypy checks here that ``ShardedRedisStore`` satisfies the ``Store`` protocol."""

__all__ = ["ShardedRedisStore", "redact"]
