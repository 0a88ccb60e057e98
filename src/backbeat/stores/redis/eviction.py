"""The warning a Redis store gives when its server may evict keys: tasks would then vanish."""

from __future__ import annotations

import logging
import weakref
from typing import Any

from redis.exceptions import RedisError

log = logging.getLogger("backbeat.stores.redis")

_warned: weakref.WeakSet[Any] = weakref.WeakSet()
"""The clients whose servers were warned about (the shards of a cluster store share one)."""


async def warn_if_evicting(client: Any, url: str) -> None:
    """Log a warning, once per ``client``, if a server behind ``client`` may evict
    tasks or runs when its memory is full (a ``maxmemory-policy`` other than ``noeviction`` and
    ``volatile-*``): an evicted task or run is gone without a trace. Read from ``INFO memory``
    (``CONFIG`` is often disabled on hosted Redis); a server that refuses ``INFO`` too is not
    judged."""
    if client in _warned:
        return
    try:
        info = await client.info("memory")
    except RedisError:
        return
    if not isinstance(info, dict):
        return
    # a cluster client answers for each node: {node: {field: value}}
    nodes = [info] if "maxmemory_policy" in info else [n for n in info.values() if isinstance(n, dict)]
    policies = {str(node["maxmemory_policy"]) for node in nodes if "maxmemory_policy" in node}
    # volatile-* evicts only keys with a TTL, and no task or run has one (ElastiCache's default)
    evicting = sorted(p for p in policies if p != "noeviction" and not p.startswith("volatile-"))
    if evicting:
        _warned.add(client)
        log.warning(
            "Redis at %s evicts keys when its memory is full (maxmemory-policy %s): stored tasks and "
            "runs can vanish without a trace; set maxmemory-policy to noeviction",
            url,
            ", ".join(evicting),
        )
