"""The benches' counted no-op: waiting for the awaited runs ends, with an error naming how many
ran, instead of waiting for ever."""

from __future__ import annotations

import pytest
from bench.counted import COUNT, noop


async def test_waiting_for_runs_that_never_come_fails_naming_how_many_ran() -> None:
    COUNT.expect(3)
    await noop()

    with pytest.raises(TimeoutError, match=r"only 1 of 3 runs within 0\.01 s"):
        await COUNT.all_ran(timeout=0.01)

    await noop()
    await noop()
    await COUNT.all_ran(timeout=0.01)
