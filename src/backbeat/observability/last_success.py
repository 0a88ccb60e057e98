"""When a run of each task name last succeeded in this process: the last-success gauges' values."""

from __future__ import annotations

from backbeat.model.records import Task
from backbeat.model.triggers import is_one_shot

TRACKED = 1_000
"""Recurring task ids whose names are followed at most: a name with a task beyond them keeps its
value for good (what is kept stays bounded when tasks come and go by the thousand, removed by
other processes or ended by their triggers, which this process never hears of)."""
REMEMBERED_REMOVALS = 1_024
"""Removed task ids remembered, so that a run still going when its task was removed does not
bring back a value dropped with it."""


class LastSuccess:
    """Success times by task name, forgotten once every recurring task of that name that
    succeeded here has been removed (or renamed) here. A one-shot task is deleted by its
    success, never removed, so its id is not kept."""

    def __init__(self) -> None:
        self.by_name: dict[str, float] = {}
        """Seconds since the epoch of each task name's last success."""
        self._name_of: dict[str, str] = {}  # recurring task id -> its name
        self._ids: dict[str, set[str]] = {}  # name -> the recurring task ids of it
        self._kept: set[str] = set()  # names with a task beyond TRACKED: never dropped
        self._removed: dict[str, None] = {}  # the latest removed ids, oldest first

    def succeeded(self, task: Task, when: float) -> str | None:
        """A run of ``task`` succeeded at ``when`` (seconds since the epoch); the name it was
        renamed from, if that name is left without a task (its value dropped). The run of a
        task removed here sets no value its name no longer has."""
        if task.id in self._removed:
            if task.name in self.by_name:
                self.by_name[task.name] = when
            return None
        self.by_name[task.name] = when
        if is_one_shot(task.trigger):
            return None
        previous = self._name_of.get(task.id)
        if previous == task.name:
            return None
        gone = self.removed(task.id, forget=False)
        if len(self._name_of) < TRACKED:
            self._name_of[task.id] = task.name
            self._ids.setdefault(task.name, set()).add(task.id)
        else:
            self._kept.add(task.name)
        return gone

    def removed(self, task_id: str, *, forget: bool = True) -> str | None:
        """Forget the task ``task_id`` (``forget``: it was removed, not renamed); the name it
        leaves without a task (its value dropped), if any."""
        if forget:
            self._removed[task_id] = None
            if len(self._removed) > REMEMBERED_REMOVALS:
                del self._removed[next(iter(self._removed))]
        name = self._name_of.pop(task_id, None)
        if name is None:
            return None
        ids = self._ids[name]
        ids.discard(task_id)
        if ids or name in self._kept:
            return None
        del self._ids[name]
        self.by_name.pop(name, None)
        return name


__all__ = ["LastSuccess"]
