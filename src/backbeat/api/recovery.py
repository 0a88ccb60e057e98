"""The facade's calls for runs that went wrong: dead letters, circuit breakers, failure
handlers and cancelling a running run."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from backbeat.api.facade_base import SchedulerState
from backbeat.engine import cancellations
from backbeat.model.records import DeadLetter
from backbeat.policies.breakers import SharedBreakers
from backbeat.policies.definitions import CircuitBreakerPolicy
from backbeat.policies.handlers import TaskFailureHandler


class RecoveryCalls(SchedulerState):
    """Dead letters, breakers, handlers and cancellation (mixed into ``BackgroundTaskScheduler``)."""

    failure_handlers: list[TaskFailureHandler]

    def add_failure_handler(self, handler: TaskFailureHandler) -> None:
        """Call ``handler`` after every run this process executes."""
        self.failure_handlers.append(handler)

    async def list_dead_letters(self, task_id: str | None = None) -> list[DeadLetter]:
        """Runs that failed their last attempt, oldest first (with exception type, message, traceback)."""
        await self._ensure_open(self.store)
        return await self.store.dead_letters(task_id)

    async def get_dead_letter(self, dead_letter_id: str) -> DeadLetter | None:
        """One dead letter by its id (the failed run's id), or ``None``."""
        letters = await self.list_dead_letters(dead_letter_id.rpartition("@")[0] or None)
        return next((letter for letter in letters if letter.id == dead_letter_id), None)

    async def retry_dead_letter(self, dead_letter_id: str) -> str | None:
        """Run a dead letter's fire time again (attempt 1, now); returns the run id, or ``None``
        if there is no such dead letter or its task already has ``max_instances`` runs."""
        await self._ensure_open(self.store)
        run = await self.store.requeue_dead_letter(dead_letter_id, now=self.clock())
        if run is None:
            return None
        self._notify(self.store)
        return run.id

    async def remove_dead_letters(self, dead_letter_ids: Collection[str]) -> list[str]:
        """Forget dead letters; returns the ids that existed."""
        await self._ensure_open(self.store)
        return await self.store.remove_dead_letters(dead_letter_ids)

    async def circuit_breaker_state(self, name: str) -> dict[str, Any]:
        """The shared state of the breaker ``name`` (a policy's ``name``, else the task name)."""
        await self._ensure_open(self.store)
        return await SharedBreakers(self.store, self.clock).state(CircuitBreakerPolicy(name=name), name)

    async def reset_circuit_breaker(self, name: str) -> None:
        """Close the breaker ``name`` in every process."""
        await self._ensure_open(self.store)
        key = CircuitBreakerPolicy(name=name).key(name)
        record = await self.store.get_state(key)
        closed = {"state": "closed", "failures": 0, "successes": 0, "probes": 0}
        while not await self.store.put_state(key, closed, version=record.version if record else 0):
            record = await self.store.get_state(key)

    async def cancel_run(self, run_id: str) -> bool:
        """Cancel a running run: at once if this process runs it, else within a lease renewal
        period in whichever process does. Returns whether it ran here."""
        for engine in (self._engine, self._local_engine):
            if engine is not None and engine.cancel(run_id):
                return True
        await self._ensure_open(self.store)
        await cancellations.request(self.store, run_id, self.clock())
        return False
