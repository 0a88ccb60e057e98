"""The REST API fuzzed by schemathesis from its own OpenAPI schema (in process, over ASGI), on a
SQLite store populated by a real scheduler, with the bearer token required for mutating calls.

The app is built at import (schemathesis loads the schema then), over a SQLite file that a
module fixture fills before the first example and removes after the last; schemathesis's
``from_fixture`` does not run on pytest 9.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from backbeat import BackgroundTaskScheduler
from backbeat.web import create_app
from tests.web.conftest import FAST, TOKEN
from tests.web.populate import populate

DIRECTORY = Path(tempfile.gettempdir()) / f"backbeat-fuzz-{os.getpid()}"
URL = f"sqlite:///{DIRECTORY / 'store.db'}"
APP = create_app(URL, token=TOKEN)
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


@pytest.fixture(scope="module", autouse=True)
def populated_store() -> Iterator[None]:
    DIRECTORY.mkdir(exist_ok=True)

    async def fill() -> None:
        scheduler = BackgroundTaskScheduler(store=URL, config=FAST)
        await scheduler.start_async()
        try:
            await populate(scheduler, DIRECTORY / "record.jsonl")
        finally:
            await scheduler.stop_async(timeout=1.0)

    asyncio.run(fill())
    yield
    asyncio.run(APP.state.admin.close())
    for file in DIRECTORY.iterdir():
        file.unlink()
    DIRECTORY.rmdir()


@schema.parametrize()
@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_api_honours_its_schema(case: schemathesis.Case[Any]) -> None:
    case.call_and_validate(headers={"Authorization": f"Bearer {TOKEN}"})
