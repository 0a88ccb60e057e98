"""Fixtures shared by every test directory (see ``tests/scheduling.py`` and ``tests/redis_server.py``),
and the logs of a failed test's worker subprocesses in its report."""

from __future__ import annotations

from collections.abc import Generator

import pytest

from tests.redis_server import private_redis
from tests.scheduling import (
    STARTED_WORKERS,
    make_scheduler,
    record_file,
    sqlite_url,
    worker_log_sections,
    workers,
)

__all__ = ["make_scheduler", "private_redis", "record_file", "sqlite_url", "workers"]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failed test's report carries what its worker subprocesses wrote on stderr."""
    report = yield
    if report.failed:
        report.sections.extend(worker_log_sections(item.stash.get(STARTED_WORKERS, [])))
    return report
