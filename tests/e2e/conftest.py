"""Fixtures and markers of the seed end-to-end tests."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    # Seed 003's integration test class is marked ``@pytest.mark.integration`` verbatim.
    config.addinivalue_line("markers", "integration: seed 003's integration tests (real Redis)")
