"""Fixtures shared by every test directory (see ``tests/scheduling.py``)."""

from __future__ import annotations

from tests.scheduling import make_scheduler, record_file, sqlite_url, workers

__all__ = ["make_scheduler", "record_file", "sqlite_url", "workers"]
