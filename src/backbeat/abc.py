"""The plug-in points: ``Store`` (every backend), ``Executor`` (where a call runs), ``RunHook``
(around every run) and ``HostedService`` (what a host starts and stops).

Lease rules, written once here for every store:

* A **task** (schedule) is due when ``next_run_time <= now``, it is not paused, not
  orphaned, not quarantined, and nobody holds its *claim* (or the claim expired).
  ``claim_due`` leases due tasks to one owner; the owner decides which fire times run
  (misfire, coalesce) and calls ``fire``, which creates the runs, stores the next fire
  time and drops the claim, all in one atomic step. An owner that dies between the two
  leaves a claim that expires after ``lease``; the next claimer recomputes the same fire
  times, so the same idempotency keys result.
* A **run** is one execution of one fire time, id ``task_id@fire_time`` (the idempotency
  key). It is leased to the owner that runs it until ``lease_until``; the owner pushes the
  lease forward with ``extend`` while the run lives. A run whose lease expired is claimed
  again by ``claim_due`` (``attempt + 1``, ``recovered=True``). A run with no owner is
  *waiting* (a retry, a trigger-now, a released run): claimable once ``lease_until`` passed.
* ``Task.running`` counts the runs of a task in the store (buffered ones included); ``fire``
  admits fire times by the task's overlap policy against it (never more than
  ``options.max_instances`` for ``allow_all``; one run at a time plus buffered ones for the
  others), which makes the policy global across processes.
* A task whose ``next_run_time`` is ``None`` leaves the store when its last run completes:
  a one-shot task is never removed before its run finished.
* **Two clocks.** Leases are judged by the *store's* clock, schedules by the caller's
  ``now``, so a host whose clock runs ahead cannot steal a live lease, nor one running
  behind keep a dead one:

  - the store's clock: a task claim's end and a run's lease end (``claim_until``, the
    ``lease_until`` of a run with an owner) are set to store-now + ``lease`` by
    ``claim_due``, ``fire`` and ``extend``, and have expired when ``<= store-now``. The
    store's clock is Redis ``TIME``, PostgreSQL ``clock_timestamp()``, MongoDB ``$$NOW``;
    the memory and SQLite stores, used on one host, read that host's clock (their
    ``lease_clock``);
  - the caller's ``now``: what is due (``next_run_time <= horizon``, ``horizon``
    defaulting to ``now``), misfires (the engine's decisions), and when a *waiting* run
    becomes claimable: its ``lease_until`` (a retry time, a trigger-now, a release) is a
    not-before time the caller gave, claimable once ``<= now``.

  ``extend``/``complete``/``release`` keep the holder rule: they act on runs still leased to
  the owner *under the fencing token it holds*, whether or not the lease ended, until the
  store leased the run again (to another owner, or to the same one in a later claim).
* **Fencing tokens.** Each time the store leases a run to a holder (``fire``, ``claim_due``
  of a waiting run or a takeover), it sets ``run.fencing_token`` to the next value of a
  counter of its own that never goes back (not even by ``clear``): a later holder of a fire
  time always holds a greater token than every earlier one. A holder passes its token back
  with every ``complete``, ``extend`` and ``release``, and the store refuses an older one;
  a job passes it to its own downstream writes, which can refuse an older holder the same way.
* A record that cannot be decoded is quarantined (kept as it was, left out of claims and
  listings, reported by ``quarantined``), never deleted, never raised out of a claim.
* Driver errors are raised as :class:`backbeat.errors.StoreError` subclasses;
  :class:`backbeat.errors.StoreUnavailableError` when the server cannot be reached.
"""

from __future__ import annotations

import builtins
import contextlib
from abc import ABC
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol, runtime_checkable

from backbeat.model.history import HistoryEntry, HistoryQuery, HistorySettings
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


@runtime_checkable
class Store(Protocol):
    """Persistence and lease contract shared by every backend."""

    async def open(self) -> None:
        """Connect and create what the store needs (tables, indexes, scripts). Idempotent.

        Raises:
            StoreUnavailableError: the server cannot be reached.
        """

    async def close(self) -> None:
        """Release connections. The store may be opened again."""

    async def add(self, tasks: Sequence[Task], *, replace: bool = False) -> None:
        """Store new tasks, atomically as one batch.

        With ``replace=True`` an existing task of the same id is overwritten (its ``running``
        count and counters are kept); otherwise nothing is written if any id exists.

        Raises:
            TaskExistsError: an id is already stored and ``replace`` is false.
            ValueError: an id is empty or is not text every store can keep (see
                :func:`backbeat.model.stored_text.refuse_unstorable_ids`); nothing is written.
        """

    async def get(self, task_id: str) -> Task | None:
        """The task with this id, or ``None`` (also for a quarantined record)."""

    async def list(
        self, filter: TaskFilter | None = None, *, cursor: str | None = None, limit: int | None = None
    ) -> tuple[builtins.list[Task], str | None]:
        """Tasks matching ``filter`` ordered by id, after ``cursor``; returns (page, next cursor)."""

    async def update(self, task_id: str, **changes: Any) -> Task:
        """Change fields of a task (``paused``, ``next_run_time``, ``trigger``, ``orphaned``,
        ``name``, ``job``, ``tags``, ``options``, ``args``, ``kwargs``, ``data``,
        ``trace_context``) and bump its version.

        Raises:
            TaskNotFoundError: no task has this id.
            ValueError: a field that cannot be updated.
        """

    async def remove(self, task_ids: Collection[str]) -> builtins.list[str]:
        """Remove tasks (their runs in flight finish; their completion is then a no-op).

        The runs a removed task leaves (leased, retrying or released) stay runs of that
        *incarnation* of the task: a task added again under the same id is a new one, which
        they never touch. Their completion, retry or dead letter changes none of its counters
        and starts none of its buffered runs, its ``running`` count starts at 0 without them,
        and a claim of one of them carries no task snapshot (``run.task`` is ``None``), as for
        a task that stayed removed.

        Returns the ids that existed.
        """

    async def remove_by_tag(self, tag: str) -> builtins.list[str]:
        """Remove every task carrying ``tag``; returns their ids."""

    async def clear(self) -> None:
        """Remove every task, run, dead letter, state document and quarantined record of this store."""

    async def claim_due(
        self, owner: str, *, now: datetime, lease: timedelta, limit: int, horizon: datetime | None = None
    ) -> Claim:
        """Atomically lease up to ``limit`` due tasks and claimable runs to ``owner``.

        Due tasks are those whose next run time is at or before ``horizon`` (default ``now``,
        the caller's clock) and that nobody holds a live claim on (a claim ends by the
        store's clock): a later ``horizon`` lets the engine claim a little ahead and start
        runs on time. Claimable runs are waiting runs whose ``lease_until <= now`` (never
        ``horizon``) and runs whose lease ended by the store's clock (those get ``attempt +
        1`` and ``recovered=True``). Claims and runs are leased until store-now + ``lease``;
        each run leased gets a new ``fencing_token``. Each run carries its task snapshot
        (``run.task``; ``None`` if the task was removed, also when a task of the same id was
        added since: see ``remove``). Two owners calling at once never receive the same task
        or run.
        """

    async def fire(
        self, owner: str, decisions: Sequence[FireDecision], *, now: datetime, lease: timedelta
    ) -> builtins.list[FireResult]:
        """Apply the engine's decisions for tasks ``owner`` claimed, atomically per task.

        For each decision whose task is still claimed by ``owner``, admit each fire time by
        the decision's ``overlap`` policy and the task's ``running`` count
        (:func:`backbeat.model.overlap.admit`): create a run leased to ``owner`` until
        store-now + ``lease``, with a new ``fencing_token``, or a *buffered* run (waiting,
        not claimable before :data:`~backbeat.model.overlap.BUFFERED_UNTIL`; reported in
        ``buffered``), or skip it (reported in ``skipped``); set
        ``next_run_time`` (unless a user changed the task since the claim: ``version !=
        claimed_version``), drop the claim. A task left with no next fire time and no runs is
        removed. Decisions for tasks no longer claimed by ``owner`` are ignored (absent from
        the result). ``now`` is the caller's clock, for what it schedules (leases count by the
        store's).
        """

    async def complete(
        self, owner: str, results: Sequence[RunResult], *, history: HistorySettings | None = None
    ) -> set[str]:
        """Finish runs: delete each run (or re-queue it when ``retry_at`` is set) and, for a
        deleted run, make the earliest buffered run of its task claimable from the result's
        ``finished_at`` (in the same atomic step, also for a removed task's runs), update
        its task's counters (``runs``, ``failures``, ``last_outcome``, ``last_run_at``, also
        for a re-queued run) and ``running`` (unchanged for a re-queued run), and remove a
        task with nothing left to run. A run whose task was removed while it existed touches
        no task (see ``remove``): it is deleted or re-queued, and a dead letter of it keeps no
        task snapshot.

        A re-queued run gets ``attempt + 1``, owner ``None`` and ``lease_until = retry_at``;
        a ``DEFERRED`` result keeps its attempt and leaves the task's counters alone. A
        result with ``dead_letter`` set also stores a :class:`DeadLetter` (with the task's
        snapshot) under the run's id, replacing an older one of the same id.

        Only runs still leased to ``owner`` under the result's ``run.fencing_token`` are
        completed (also after their lease ended, until another lease was granted); returns the
        ids of the others: held by another holder (another owner or token), or gone (completed
        by another holder after a takeover, or by this one's completion sent again after a lost
        reply: the store cannot tell them apart, the engine can by its lease deadlines). A run
        waiting under that token (re-queued by this holder's completion, as a resend finds it)
        is neither completed again nor returned.

        With ``history`` (run history on), each run completed also leaves its history entry
        (see :func:`backbeat.model.completed_history.history_row`: id, fields and stored
        document, ``owner`` as the entry's owner, ``run.task`` for its name and arguments) in
        the same call: in its atomic step or transaction where the store has one. A run not
        completed records nothing, so a completion sent again (after a lost reply) records each
        entry once; a deferred run has none. An entry whose document cannot be built is left
        out (logged) and its run completes all the same, as is an entry that ended before 1970
        (which ``record_history`` refuses).
        """

    async def extend(
        self, owner: str, leases: Mapping[str, int], *, now: datetime | None = None, lease: timedelta
    ) -> set[str]:
        """Push the lease of runs still leased to ``owner`` under the given fencing tokens
        (``leases``: run id -> token) to store-now + ``lease``; return their ids. ``now`` is
        not used (a lease counts by the store's clock)."""

    async def release(
        self, owner: str, *, leases: Mapping[str, int], task_ids: Collection[str], now: datetime
    ) -> None:
        """Give up runs (``leases``: run id -> fencing token, as for ``extend``) and task
        claims of ``owner`` so another owner may take them at once.

        Released runs become waiting runs with ``attempt + 1`` and ``lease_until = now`` (the
        caller's clock).
        """

    async def enqueue_run(self, task_id: str, *, fire_time: datetime, now: datetime) -> Run | None:
        """Add a waiting run of a task for ``fire_time`` (trigger-now), claimable from ``now``
        (the caller's clock).

        Returns ``None`` if ``max_instances`` runs exist already or that run already exists.

        Raises:
            TaskNotFoundError: no task has this id.
        """

    async def list_runs(self, task_id: str | None = None) -> builtins.list[Run]:
        """Runs now in the store (leased or waiting), optionally of one task (of its id: runs a
        removed task of that id left are included, with ``detached`` set)."""

    async def next_wakeup(self, *, now: datetime | None = None) -> datetime | None:
        """Earliest time, in the caller's clock, something may become claimable: a task's
        next run time, a waiting run's ``lease_until``, or a claim's or a run's lease end,
        moved from the store's clock to the caller's (``now + (end - store-now)``). ``now``
        defaults to this host's clock (for the memory and SQLite stores: their lease clock,
        so their lease ends are returned as they are). ``None`` when nothing is scheduled."""

    def wakeups(self) -> AsyncIterator[None]:
        """Yield whenever another process may have added or changed something.

        Best effort (pub/sub, NOTIFY, a data-version poll); the engine also polls. A store may
        stay silent for a task added after the earliest one scheduled: every sleeping engine
        looks at the store by that one's time anyway.
        """

    async def quarantined(self) -> builtins.list[QuarantinedRecord]:
        """Records that could not be decoded, kept as they were."""

    async def quarantine(self, task_id: str, error: str) -> bool:
        """Quarantine the record of a task the store cannot complete a run of, whatever the
        result (the engine's call, when it keeps being refused): kept as it is, left out of
        claims, ``get`` and listings, its claim dropped, reported by :meth:`quarantined` with
        ``error``, as a record that cannot be decoded is. Its runs stay: a claim of one carries
        no task (``run.task`` is ``None``). Returns whether the task was stored; a store whose
        records are never unreadable (the memory store) quarantines nothing and returns
        ``False``."""

    async def dead_letters(self, task_id: str | None = None) -> builtins.list[DeadLetter]:
        """Dead letters ordered by ``failed_at`` (oldest first), optionally of one task.

        Removing a task keeps its dead letters; ``clear`` removes them.
        """

    async def remove_dead_letters(self, ids: Collection[str]) -> builtins.list[str]:
        """Forget dead letters; returns the ids that existed."""

    async def requeue_dead_letter(self, dead_letter_id: str, *, now: datetime) -> Run | None:
        """Run a dead letter's fire time again, atomically: drop the dead letter and add a
        waiting run (attempt 1, claimable at ``now``), re-adding the task from the dead
        letter's snapshot (with ``next_run_time`` ``None``) when it is no longer stored.

        Returns ``None`` and changes nothing when the dead letter does not exist, a run of
        that id exists, or the task already has ``max_instances`` runs.
        """

    async def get_state(self, key: str) -> StateRecord | None:
        """A shared state document (e.g. ``breaker:<name>``), or ``None`` if never written."""

    async def put_state(self, key: str, value: dict[str, Any], *, version: int, wake: bool = False) -> bool:
        """Compare-and-set: store ``value`` with version ``version + 1`` if the stored version
        is ``version`` (``0``: not stored yet). Returns whether it was written. With ``wake``,
        a write wakes every scheduler's :meth:`wakeups` (a change they should act on at once)."""

    async def record_history(self, entries: Sequence[HistoryEntry]) -> None:
        """Keep finished runs' history entries. An entry stored already (its id with the same
        task and end) is left as it was, so recording a batch again (after a timeout) adds
        nothing twice. An id recorded again with another end is kept once by the memory and
        MongoDB stores (the first), and beside the first by the SQL and Redis stores, which tell
        entries apart by (task, end, id) without a look-up of their own in a completion; no flow
        of the engine sends one (a run's entries all carry its one end), only a call by hand.

        Raises:
            ValueError: an entry ended before 1970 (see
                :func:`backbeat.model.history.refuse_ends_before_1970`); nothing of the batch is
                written.
        """

    async def prune_history(self, task_ids: Collection[str], *, before: datetime, keep: int) -> int:
        """Forget old history, incrementally: of each task in ``task_ids``, the entries that
        ended before ``before`` and all but its newest ``keep``; and of any task, a bounded
        batch of entries that ended before ``before`` (about :data:`.PRUNE_BATCH`, found through
        an index of end times, never by reading everything). Returns how many entries were
        removed: as many as the batch when more may be left (a store that expires entries
        itself, MongoDB's TTL index, may return 0 for those)."""

    async def run_history(self, query: HistoryQuery) -> tuple[builtins.list[HistoryEntry], str | None]:
        """History entries matching ``query``, newest first (end time, then id, descending),
        and the cursor of the next page (``None`` after the last). An entry that cannot be
        decoded is logged and left out, never deleted.

        ``clear`` removes the history too; removing a task keeps it.
        """


@runtime_checkable
class Executor(Protocol):
    """Runs one call of a job; ``submit`` returns its result or raises its exception."""

    async def start(self) -> None:
        """Prepare resources (pools)."""

    async def shutdown(self, wait: bool = True) -> None:
        """Release resources; with ``wait`` let submitted calls finish first."""

    async def submit(self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Run ``func(*args, **kwargs)`` and return what it returns (awaiting it if it is async)."""


RunHook = Callable[[Task, Run], contextlib.AbstractContextManager[object]]
"""Called as a run starts; the context manager it returns is entered around the job's call (in
the run's context, so a span it makes current is the job's parent) and sees its exception."""


class HostedService(ABC):  # noqa: B024 - see the docstring
    """A service the host starts when the application starts and stops when it stops.

    Both methods do nothing by default, as in Neuroglia, so a subclass overrides only what it
    needs; not being abstract also lets type checkers accept ``get_services(HostedService)``.
    """

    async def start_async(self) -> None:  # noqa: B027 - an optional hook, like Neuroglia's
        """Start the service."""

    async def stop_async(self) -> None:  # noqa: B027 - an optional hook, like Neuroglia's
        """Stop the service gracefully."""


__all__ = ["Executor", "HostedService", "RunHook", "Store"]
