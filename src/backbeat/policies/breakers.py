"""Circuit breakers whose state is a document in the store, shared by every process.

The document (``breaker:<name>``) holds ``state`` (closed, open, half_open), the
consecutive ``failures``, the half-open ``successes`` and ``probes`` in flight, and
``opened_at`` / ``half_open_at`` (epoch seconds). Every change is a compare-and-set, so
two processes recording at once never lose a count.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from backbeat.abc import Store
from backbeat.errors import StoreError
from backbeat.policies.definitions import CircuitBreakerPolicy

log = logging.getLogger("backbeat.breakers")

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
_CAS_TRIES = 8
_PROBE_WAIT = 1.0
"""Seconds a run waits while the half-open breaker's probes are in flight."""


def _closed() -> dict[str, Any]:
    return {"state": CLOSED, "failures": 0, "successes": 0, "probes": 0}


class SharedBreakers:
    """Admit or defer runs, and record their outcomes, through breaker documents in ``store``."""

    def __init__(self, store: Store, clock: Callable[[], datetime]) -> None:
        self.store = store
        self.clock = clock

    async def state(self, policy: CircuitBreakerPolicy, task_name: str) -> dict[str, Any]:
        """The breaker's current document (closed when never written)."""
        record = await self.store.get_state(policy.key(task_name))
        return dict(record.value) if record is not None else _closed()

    async def admit(self, policy: CircuitBreakerPolicy, task_name: str) -> datetime | None:
        """``None`` when a run may go now, else when to try it again.

        An open breaker whose recovery timeout passed turns half-open and admits up to
        ``success_threshold`` probe runs at a time; others wait for the probes' verdict.
        """
        now = self.clock()
        for _ in range(_CAS_TRIES):
            key = policy.key(task_name)
            record = await self.store.get_state(key)
            doc = dict(record.value) if record is not None else _closed()
            version = record.version if record is not None else 0
            state = doc.get("state", CLOSED)
            if state == CLOSED:
                return None
            stamp = now.timestamp()
            if state == OPEN:
                reopen = float(doc.get("opened_at", 0)) + policy.recovery_timeout
                if stamp < reopen:
                    # spread the deferred runs so they do not all come back at the same instant
                    spread = random.uniform(0, max(policy.recovery_timeout * 0.05, 0.01))
                    return now + timedelta(seconds=reopen - stamp + spread)
                doc.update(state=HALF_OPEN, successes=0, probes=0, half_open_at=stamp)
            elif stamp - float(doc.get("half_open_at", 0)) > max(policy.recovery_timeout, _PROBE_WAIT):
                doc.update(probes=0, half_open_at=stamp)  # probes of a dead process never reported
            if int(doc.get("probes", 0)) >= policy.success_threshold:
                return now + timedelta(seconds=min(_PROBE_WAIT, max(policy.recovery_timeout, 0.05)))
            doc["probes"] = int(doc.get("probes", 0)) + 1
            if await self.store.put_state(key, doc, version=version):
                return None
        return None  # contended for long: let the run go rather than stall it

    async def record(self, policy: CircuitBreakerPolicy, task_name: str, *, success: bool) -> str | None:
        """Count a run's outcome; returns the new state when it changed."""
        key = policy.key(task_name)
        for _ in range(_CAS_TRIES):
            record = await self.store.get_state(key)
            old = dict(record.value) if record is not None else _closed()
            version = record.version if record is not None else 0
            new = self._next(policy, old, success)
            if new == old:
                return None
            if await self.store.put_state(key, new, version=version):
                if new["state"] != old.get("state", CLOSED):
                    log.warning("circuit breaker %s is now %s", key, new["state"])
                    return str(new["state"])
                return None
        log.warning("circuit breaker %s: gave up recording an outcome after %d conflicts", key, _CAS_TRIES)
        return None

    async def record_safely(self, policy: CircuitBreakerPolicy, task_name: str, *, success: bool) -> None:
        """:meth:`record`, logging a store error instead of raising it (the run itself is done)."""
        try:
            await self.record(policy, task_name, success=success)
        except StoreError as exc:
            log.warning("circuit breaker %s: outcome not recorded: %s", policy.key(task_name), exc)

    def _next(self, policy: CircuitBreakerPolicy, old: dict[str, Any], success: bool) -> dict[str, Any]:
        doc = dict(old)
        state = doc.get("state", CLOSED)
        if state == HALF_OPEN:
            doc["probes"] = max(int(doc.get("probes", 0)) - 1, 0)
            if not success:
                return {**_closed(), "state": OPEN, "opened_at": self.clock().timestamp()}
            doc["successes"] = int(doc.get("successes", 0)) + 1
            return _closed() if doc["successes"] >= policy.success_threshold else doc
        if state == OPEN:
            return doc  # a run admitted before the breaker opened: its outcome changes nothing
        if success:
            return _closed() if int(doc.get("failures", 0)) else doc
        doc["failures"] = int(doc.get("failures", 0)) + 1
        if doc["failures"] >= policy.failure_threshold:
            return {**_closed(), "state": OPEN, "opened_at": self.clock().timestamp()}
        return doc
