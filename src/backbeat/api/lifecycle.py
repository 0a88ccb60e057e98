"""Where a scheduler is in its life."""

from __future__ import annotations

import enum


class SchedulerState(enum.Enum):
    """Where a scheduler is in its life; it may be started again once stopped."""

    STOPPED = "stopped"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
