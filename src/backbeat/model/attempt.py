"""How one call of a job went, as the engine hands it to the policies."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from backbeat.model.records import RunOutcome


@dataclass(slots=True, kw_only=True)
class Attempt:
    """How one call of a job went."""

    outcome: RunOutcome
    started: datetime
    duration: float = 0.0
    result: Any = None
    error: BaseException | None = None
    func: Callable[..., Any] | None = None
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] | None = None
