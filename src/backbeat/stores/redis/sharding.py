"""How a sharded store on Redis Cluster is addressed and how it spreads tasks over shards.

A task lives in shard ``crc32(task id) % shards``; its runs, dead letters and claim live with it
(a run id is ``task_id@fire_time``). Shard ``i`` is a whole single-slot store whose prefix
(:func:`shard_prefix`) is its hash tag, so every Lua script stays in one slot; the tags are
picked so that shard ``i`` falls in the ``i``-th equal part of the 16,384 slots, which spreads
shards evenly over masters that hold even runs of slots (as ``redis-cli --cluster create`` and
``rebalance`` lay them out). The shard count is fixed when the store is first opened (recorded
under :func:`shards_key`).
"""

from __future__ import annotations

import functools
import itertools
import zlib
from dataclasses import dataclass
from typing import Literal
from urllib.parse import parse_qsl, unquote, urlsplit

from redis.crc import REDIS_CLUSTER_HASH_SLOTS as SLOTS
from redis.crc import key_slot

from backbeat.errors import ConfigurationError

SCHEME = "redis+cluster"
DEFAULT_SHARDS = 12
"""Shards of a new store when ``shards=`` is not given: several per master of a small cluster,
so that masters added later can take some over (see the README on resharding)."""
MAX_SHARDS = 1024
Durability = Literal["leader", "replica"]
"""``leader``: a write is acknowledged by the shard's master; ``replica``: also by one of its
replicas (``WAIT 1``) before the call returns."""


@dataclass(frozen=True, slots=True)
class ClusterTarget:
    """What a ``redis+cluster://`` URL says."""

    startup_nodes: tuple[tuple[str, int], ...]
    prefix: str | None = None
    shards: int | None = None
    durability: Durability = "leader"
    username: str | None = None
    password: str | None = None
    ssl: bool = False


def parse_cluster_url(url: str) -> ClusterTarget:
    """Read ``redis+cluster://[user:password@]host:port[,host:port...]/?prefix=P&shards=N``
    (``&durability=replica``, ``&ssl=true``).

    Raises:
        ConfigurationError: not such a URL, a node without a port, an unknown option, a bad
            shard count or durability.
    """
    parts = urlsplit(url)
    if parts.scheme.lower() != SCHEME:
        raise ConfigurationError(f"a Redis Cluster store URL starts with {SCHEME}://, not {parts.scheme!r}")
    auth, _, hosts = parts.netloc.rpartition("@")
    username, _, password = auth.partition(":")
    nodes = tuple(_node(host, url) for host in hosts.split(",") if host)
    if not nodes:
        raise ConfigurationError(f"a Redis Cluster store URL names at least one host:port ({url!r})")
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    unknown = set(options) - {"prefix", "shards", "durability", "ssl"}
    if unknown:
        raise ConfigurationError(
            f"unknown Redis Cluster store option(s) {sorted(unknown)} "
            "(known: prefix, shards, durability, ssl)"
        )
    shards = None
    if "shards" in options:
        shards = check_shards(_int(options["shards"], "shards"))
    return ClusterTarget(
        startup_nodes=nodes,
        prefix=options.get("prefix") or None,
        shards=shards,
        durability=check_durability(options.get("durability", "leader")),
        username=unquote(username) or None,
        password=unquote(password) if auth and password else None,
        ssl=options.get("ssl", "").lower() in ("1", "true", "yes"),
    )


def check_shards(shards: int) -> int:
    """``shards`` if it is a usable shard count.

    Raises:
        ConfigurationError: below 1 or above :data:`MAX_SHARDS`.
    """
    if not 1 <= shards <= MAX_SHARDS:
        raise ConfigurationError(f"shards must be between 1 and {MAX_SHARDS}, not {shards}")
    return shards


def check_durability(value: str) -> Durability:
    """``value`` as a :data:`Durability`.

    Raises:
        ConfigurationError: neither ``leader`` nor ``replica``.
    """
    if value == "leader":
        return "leader"
    if value == "replica":
        return "replica"
    raise ConfigurationError(f"durability must be 'leader' or 'replica', not {value!r}")


@dataclass(frozen=True, slots=True)
class ShardTokens:
    """The fencing tokens of a sharded store: shard ``i``'s own token ``t`` is handed out as
    ``t * shards + i``, so each shard's tokens still grow, and two shards' never meet. A run
    never held (token 0) shows 0."""

    shards: int

    def outward(self, token: int, shard: int) -> int:
        return token * self.shards + shard if token else 0

    def inward(self, token: int, shard: int) -> int:
        """The shard's own token; -1 (held by nobody) for a token it cannot have handed out."""
        if token == 0:
            return 0
        own, rest = divmod(token - shard, self.shards)
        return own if rest == 0 and own > 0 else -1


def shard_of(key: str, shards: int) -> int:
    """The shard of a task id (or of a shared state key): stable across processes and releases."""
    return zlib.crc32(key.encode()) % shards


def task_of_run(run_id: str) -> str:
    """The task id of a run id (``task_id@fire_time``; a fire time holds no ``@``)."""
    return run_id.rpartition("@")[0]


@functools.cache
def shard_prefix(prefix: str, shard: int, shards: int) -> str:
    """The key prefix (and hash tag) of one shard: ``P:i``, or ``P:i.n`` for the first ``n``
    that puts it in the ``i``-th of ``shards`` equal parts of the slots, a few slots clear of
    its ends (layouts round a master's first and last slot either way)."""
    low, high = shard * SLOTS // shards, (shard + 1) * SLOTS // shards
    margin = 2 if high - low > 8 else 0
    for n in itertools.count():
        candidate = f"{prefix}:{shard}" if n == 0 else f"{prefix}:{shard}.{n}"
        if low + margin <= key_slot(candidate.encode()) < high - margin:
            return candidate
    raise AssertionError("unreachable")


def shards_key(prefix: str) -> str:
    """The key that records the store's shard count."""
    return f"{{{prefix}}}:shards"


def _node(text: str, url: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port:
        raise ConfigurationError(f"Redis Cluster node {text!r} in {url!r} is not host:port")
    return host.strip("[]"), _int(port, f"the port of {text!r}")


def _int(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ConfigurationError(f"{what} must be a whole number, not {text!r}") from None


__all__ = [
    "DEFAULT_SHARDS",
    "SCHEME",
    "ClusterTarget",
    "Durability",
    "ShardTokens",
    "check_durability",
    "check_shards",
    "parse_cluster_url",
    "shard_of",
    "shard_prefix",
    "shards_key",
    "task_of_run",
]
