"""The contract suite's fixtures: every test runs once per store kind (marker per kind)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from backbeat.abc import Store
from tests.contract.stores import KINDS, Backend, make_backend


@pytest.fixture(params=[pytest.param(kind, marks=getattr(pytest.mark, kind)) for kind in KINDS])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    async with make_backend(request.param, tmp_path) as backend:
        yield backend


@pytest.fixture
async def store(backend: Backend) -> Store:
    """A store on fresh data."""
    return await backend.open_store()


@pytest.fixture
async def peer(backend: Backend, store: Store) -> Store:
    """Another instance on the same data as ``store``, as another process would open it."""
    return await backend.open_store()
