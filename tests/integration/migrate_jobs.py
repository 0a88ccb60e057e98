"""What the APScheduler jobs of the migration tests call, by reference, before and after migrating."""

from __future__ import annotations

from backbeat import current_run

FIRED: list[tuple[str, str, str]] = []
"""(run id, label, region) of every call made in this process."""


def report(label: str, *, region: str = "eu") -> None:
    FIRED.append((current_run().run_id, label, region))


def renamed_report(label: str, *, region: str = "eu") -> None:
    """Where ``--map-func`` points ``report``."""
    FIRED.append((current_run().run_id, f"renamed {label}", region))
