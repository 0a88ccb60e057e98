"""When a run of each task name last succeeded in this process: the last-success gauges' values."""

from __future__ import annotations

from backbeat.model.records import Task
from backbeat.model.triggers import is_one_shot


class LastSuccess:
    """Success times by task name, forgotten once every recurring task of that name that
    succeeded here has been removed (or renamed) here. A one-shot task is deleted by its
    success, never removed, so its id is not kept."""

    def __init__(self) -> None:
        self.by_name: dict[str, float] = {}
        """Seconds since the epoch of each task name's last success."""
        self._name_of: dict[str, str] = {}  # recurring task id -> its name
        self._ids: dict[str, set[str]] = {}  # name -> the recurring task ids of it

    def succeeded(self, task: Task, when: float) -> str | None:
        """A run of ``task`` succeeded at ``when`` (seconds since the epoch); the name it was
        renamed from, if that name is left without a task (its value dropped)."""
        self.by_name[task.name] = when
        if is_one_shot(task.trigger):
            return None
        previous = self._name_of.get(task.id)
        if previous == task.name:
            return None
        gone = self.removed(task.id)
        self._name_of[task.id] = task.name
        self._ids.setdefault(task.name, set()).add(task.id)
        return gone

    def removed(self, task_id: str) -> str | None:
        """Forget the task ``task_id``; the name it leaves without a task (its value dropped), if any."""
        name = self._name_of.pop(task_id, None)
        if name is None:
            return None
        ids = self._ids[name]
        ids.discard(task_id)
        if ids:
            return None
        del self._ids[name]
        self.by_name.pop(name, None)
        return name


__all__ = ["LastSuccess"]
