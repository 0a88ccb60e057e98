"""Key names of a Redis store and the time format its scripts use.

Every key starts with ``{prefix}:``: the braces make the prefix the Redis Cluster hash tag,
so all keys of one store live in one slot and every Lua script may touch any of them.
Times are integer epoch microseconds (about 1.7e15, exact in a Lua double).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from backbeat.errors import ConfigurationError

# re-exported: the scripts' time format
from backbeat.model.instants import EPOCH as EPOCH
from backbeat.model.instants import to_us as to_us


def from_us(value: bytes | str | int) -> datetime:
    """The UTC datetime of epoch microseconds (as stored: a decimal string)."""
    try:
        micros = int(value)
    except ValueError:  # a score Redis printed in exponent form
        micros = round(float(value))
    return EPOCH + timedelta(0, 0, micros)  # positional: a sixth fewer instructions than by keyword


@dataclass(frozen=True, slots=True)
class Keys:
    """Names of the keys of one store."""

    prefix: str

    def __post_init__(self) -> None:
        if not self.prefix or "{" in self.prefix or "}" in self.prefix:
            raise ConfigurationError(f"Redis key prefix {self.prefix!r} must be non-empty, without braces")

    @property
    def base(self) -> str:
        """What every key starts with: ``{prefix}:``."""
        return f"{{{self.prefix}}}:"

    @property
    def tasks(self) -> str:
        """Hash: task id -> its record, the live fields the scripts change and then the JSON
        document as last written by Python (``scripts/_lib.lua``; layout 2 and older: the
        document alone)."""
        return f"{self.base}tasks"

    @property
    def live(self) -> str:
        """Hash, key layout 2 and older: task id -> live fields, packed in one string."""
        return f"{self.base}live"

    @property
    def ids(self) -> str:
        """Sorted set, key layout 2 and older, all scores 0: task ids in lexical order."""
        return f"{self.base}ids"

    @property
    def id_index(self) -> str:
        """Sorted set, all scores 0: the boundaries of the id index's buckets (:meth:`id_bucket`)."""
        return f"{self.base}idx"

    @property
    def recent_ids(self) -> str:
        """List: ids added since the last merge into the id index's buckets (fewer than 100; ids of
        tasks removed since may remain, see ``index_new`` in ``_lib.lua``), key layout 5 on."""
        return f"{self.base}recent"

    def id_bucket(self, boundary: str) -> str:
        """Sorted set, all scores 0: the task ids from ``boundary`` to the next boundary, at most
        64 (up to 120 in buckets an older backbeat wrote; a listpack either way), for listing in
        lexical order. A boundary past the first ('') is set by a split: the shortest start of
        its piece's first id that sorts after the previous piece's last id (whole ids in stores an
        older backbeat wrote); later adds and removals keep it between the two buckets' ids."""
        return f"{self.base}ids:{boundary}"

    @property
    def tags(self) -> str:
        """Hash: task id -> JSON list of its tags (to take it out of the tag sets)."""
        return f"{self.base}tags"

    @property
    def schedule(self) -> str:
        """Sorted set: unclaimed schedulable task id -> next run time (layout 2 and older: a
        claimed one -> its claim's end)."""
        return f"{self.base}schedule"

    @property
    def claims(self) -> str:
        """Sorted set: claimed task id -> the claim's end, by the server's clock."""
        return f"{self.base}claims"

    @property
    def leases(self) -> str:
        """Sorted set: leased run id -> lease end, by the server's clock (layout 2 and older: a
        waiting run too -> when it becomes claimable)."""
        return f"{self.base}leases"

    @property
    def waiting(self) -> str:
        """Sorted set: waiting run id -> when it becomes claimable, by the callers' clock."""
        return f"{self.base}waiting"

    @property
    def quarantine(self) -> str:
        """Hash: task id -> why its document could not be decoded."""
        return f"{self.base}quarantine"

    @property
    def orphaned(self) -> str:
        """Sorted set, all scores 0: ids of orphaned tasks."""
        return f"{self.base}orphaned"

    @property
    def orphans_indexed(self) -> str:
        """String: set once ``orphaned`` holds every orphaned task (stores older than the index)."""
        return f"{self.base}orphans_indexed"

    @property
    def detached(self) -> str:
        """Set: ids of the runs removed tasks left (``scripts/remove.lua``); absent while none."""
        return f"{self.base}detached"

    @property
    def fencing(self) -> str:
        """String: the last fencing token handed out with a run's lease (only ever incremented)."""
        return f"{self.base}fencing"

    @property
    def layout(self) -> str:
        """String: the key layout version the store's keys follow (see :mod:`.layout`)."""
        return f"{self.base}layout"

    @property
    def layout_lock(self) -> str:
        """String: held (with an expiry) by the one process migrating the key layout."""
        return f"{self.base}layout_lock"

    @property
    def dead(self) -> str:
        """Hash: run id -> dead letter JSON (without its task)."""
        return f"{self.base}dead"

    @property
    def dead_tasks(self) -> str:
        """Hash: run id -> its task when it failed, ``<live size>:<live fields><document>``."""
        return f"{self.base}dead_tasks"

    @property
    def state(self) -> str:
        """Hash: state key -> ``version|value JSON``."""
        return f"{self.base}state"

    @property
    def history(self) -> str:
        """Sorted set, entries written before key layout 7: history entry id -> end time."""
        return f"{self.base}history"

    @property
    def history_docs(self) -> str:
        """Hash, entries written before key layout 7: history entry id -> its JSON document."""
        return f"{self.base}history_docs"

    @property
    def history_by_task(self) -> str:
        """Sorted set, all scores 0: every entry as ``task id \\0 end \\0 entry id`` (the end in
        epoch microseconds, 18 digits), followed since key layout 7 by ``\\0 batch.line`` (where
        its document is: :meth:`history_batch`), so one task's entries are one lexical range, in
        (end, id) order (key layout 4; layout 3 kept a :meth:`task_history` key per task)."""
        return f"{self.base}history_by_task"

    @property
    def history_at(self) -> str:
        """Sorted set, key layout 7: ``batch.window`` -> the latest end of the batch's entries in
        that window of ends (10 ms: an end without its last 4 digits); every task's entries
        (those of :meth:`history` written before)."""
        return f"{self.base}history_at"

    def history_batch(self, batch: int | str) -> str:
        """Hash, key layout 7, of a batch of entries recorded in one call: ``d`` their documents,
        a line each after a first line of what they share (``{"owner": ...}``), and ``m`` their
        :meth:`history_by_task` members, joined by NULs."""
        return f"{self.base}history_batch:{batch}"

    @property
    def history_batch_seq(self) -> str:
        """Counter, key layout 7: the number of the last :meth:`history_batch`."""
        return f"{self.base}history_batch_seq"

    @property
    def history_live(self) -> str:
        """Hash, key layout 7: batch number -> how many of its entries the indexes still hold
        (the batch is deleted with its last)."""
        return f"{self.base}history_live"

    @property
    def history_tasks(self) -> str:
        """Set, key layout 3: ids of the tasks that have a :meth:`task_history` key."""
        return f"{self.base}history_tasks"

    def task_history(self, task_id: str) -> str:
        """Sorted set, key layout 3: history entry id -> end time, of one task."""
        return f"{self.base}history:{task_id}"

    @property
    def wakeup(self) -> str:
        """Pub/sub channel announcing changes."""
        return f"{self.base}wakeup"

    def claim(self, task_id: str) -> str:
        """String: the owner of a task's claim."""
        return f"{self.base}c:{task_id}"

    def run(self, run_id: str) -> str:
        """String: a run, ``attempt|fire_time|owner`` (owner empty while it waits)."""
        return f"{self.base}r:{run_id}"

    def tag(self, tag: str) -> str:
        """Sorted set, all scores 0: ids of the tasks carrying ``tag``."""
        return f"{self.base}tag:{tag}"
