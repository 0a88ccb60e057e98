"""What a scheduler shows and steers of runs: failure handlers, dead letters, run history,
circuit breakers, cancelling a run, events and this process's runs (:class:`RunControl`, a part
of the facade)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from datetime import datetime, timedelta
from typing import Any

from reactivex import Observable

from backbeat.abc import RunHook
from backbeat.api.history import OutcomeFilter, history_query
from backbeat.api.routing import StoreRouter
from backbeat.engine import cancellations
from backbeat.model.events import EventHub, EventKind, Listener, SchedulerEvent
from backbeat.model.history import HistoryPage
from backbeat.model.records import DeadLetter
from backbeat.policies.breakers import SharedBreakers
from backbeat.policies.definitions import CircuitBreakerPolicy
from backbeat.policies.handlers import TaskFailureHandler


class RunControl:
    """The runs' side of :class:`~backbeat.api.scheduler.BackgroundTaskScheduler`."""

    _router: StoreRouter
    clock: Callable[[], datetime]
    events: EventHub
    service_provider: Any
    failure_handlers: list[TaskFailureHandler]
    run_hooks: list[RunHook]

    def add_failure_handler(self, handler: TaskFailureHandler) -> None:
        """Call ``handler`` after every run this process executes."""
        self.failure_handlers.append(handler)

    def _add_provided_failure_handlers(self) -> None:
        get_all = getattr(self.service_provider, "get_services", None)
        for handler in get_all(TaskFailureHandler) if get_all is not None else ():
            if isinstance(handler, TaskFailureHandler) and handler not in self.failure_handlers:
                self.failure_handlers.append(handler)

    async def list_dead_letters(self, task_id: str | None = None) -> list[DeadLetter]:
        """Runs that failed their last attempt, oldest first (with exception type, message, traceback)."""
        return await (await self._router.ready()).dead_letters(task_id)

    async def run_history(
        self,
        task_id: str | None = None,
        outcome: OutcomeFilter = None,
        since: datetime | timedelta | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> HistoryPage:
        """Finished runs of every process on this store, newest first: one page of at most
        ``limit``, after ``cursor`` (the ``next_cursor`` of the page before).

        ``outcome`` is one outcome (``"success"``, ``"failure"``, ``"retry_scheduled"``,
        ``"dead_lettered"``, ``"missed"``, ``"coalesced"``, ``"skipped"``, ``"cancelled"``,
        ``"lost_lease"``, ``"lost"``,
        ``"orphaned"``), several, or ``"failed"`` for the first three failures; ``since`` a time
        or how long ago.

        Raises:
            ValueError: an unknown outcome, a naive ``since``, a limit outside 1..1000, or a
                cursor that ``run_history`` did not return.
        """
        query = history_query(
            task_id=task_id, outcome=outcome, since=since, limit=limit, cursor=cursor, now=self.clock()
        )
        entries, next_cursor = await (await self._router.ready()).run_history(query)
        return HistoryPage(entries, next_cursor)

    async def get_dead_letter(self, dead_letter_id: str) -> DeadLetter | None:
        """One dead letter by its id (the failed run's id), or ``None``."""
        letters = await self.list_dead_letters(dead_letter_id.rpartition("@")[0] or None)
        return next((letter for letter in letters if letter.id == dead_letter_id), None)

    async def retry_dead_letter(self, dead_letter_id: str) -> str | None:
        """Run a dead letter's fire time again (attempt 1, now); returns the run id, or ``None``
        if there is no such dead letter or its task already has ``max_instances`` runs."""
        durable = await self._router.ready()
        run = await durable.requeue_dead_letter(dead_letter_id, now=self.clock())
        if run is None:
            return None
        self._router.notify(durable)
        return run.id

    async def remove_dead_letters(self, dead_letter_ids: Collection[str]) -> list[str]:
        """Forget dead letters; returns the ids that existed."""
        return await (await self._router.ready()).remove_dead_letters(dead_letter_ids)

    async def circuit_breaker_state(self, name: str) -> dict[str, Any]:
        """The shared state of the breaker ``name`` (a policy's ``name``, else the task name)."""
        durable = await self._router.ready()
        return await SharedBreakers(durable, self.clock).state(CircuitBreakerPolicy(name=name), name)

    async def reset_circuit_breaker(self, name: str) -> None:
        """Close the breaker ``name`` in every process."""
        durable = await self._router.ready()
        key = CircuitBreakerPolicy(name=name).key(name)
        record = await durable.get_state(key)
        closed = {"state": "closed", "failures": 0, "successes": 0, "probes": 0}
        while not await durable.put_state(key, closed, version=record.version if record else 0):
            record = await durable.get_state(key)

    async def cancel_run(self, run_id: str) -> bool:
        """Cancel a running run: at once if this process runs it, else in whichever process does,
        when the request's wake-up reaches it (or at its next lease renewal, if that is lost).
        Returns whether it ran here."""
        if any(engine.cancel(run_id) for engine in self._router.engines):
            return True
        await cancellations.request(await self._router.ready(), run_id, self.clock())
        return False

    # -- events and what this process runs ------------------------------------------------------

    @property
    def event_stream(self) -> Observable[SchedulerEvent]:
        """Every event as a reactivex observable."""
        return self.events.stream

    def add_listener(
        self, listener: Listener, kinds: Sequence[EventKind] | None = None
    ) -> Callable[[], None]:
        """Call ``listener(event)`` for each event of ``kinds`` (all when ``None``); returns an undo."""
        return self.events.add_listener(listener, kinds)

    def add_run_hook(self, hook: RunHook) -> None:
        """Enter ``hook(task, run)`` around every run this process executes (before ``start``)."""
        self.run_hooks.append(hook)

    def due_lag(self) -> float:
        """Seconds the oldest due work in the store has waited to be claimed (0 when none is
        late, or when this process does not claim); sampled every lease/3."""
        engine = self._router.engine
        return engine.due_lag if engine is not None else 0.0

    def active_runs(self) -> list[str]:
        """Ids of the runs this process executes now."""
        return [run.id for engine in self._router.engines for run in engine.active_runs()]
