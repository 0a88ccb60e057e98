"""The event loop's executor: what it calls on the loop and what it awaits."""

from __future__ import annotations

from backbeat.executors import AsyncIOExecutor


class _AsyncCallable:
    """An object with an async ``__call__`` that no weak reference can point to."""

    __slots__ = ()

    async def __call__(self, value: int) -> int:
        return value + 1


async def test_a_callable_no_weak_reference_can_point_to_is_called_and_awaited() -> None:
    executor = AsyncIOExecutor()

    assert await executor.call(_AsyncCallable(), (1,), {}) == 2
    assert await executor.submit(_AsyncCallable(), (2,), {}) == 3
