"""Job references: what is stored for a callable, and what a stored reference may resolve to."""

from __future__ import annotations

import pytest

from backbeat import ScheduledBackgroundJob, UnknownJobError, backgroundjob
from backbeat.model.registry import JobRegistry


async def module_function(x: int) -> int:
    return x


class Greeter:
    def __init__(self) -> None:
        self.greeting = "hello"

    def greet(self, name: str) -> str:
        return f"{self.greeting} {name}"


@backgroundjob(task_type="scheduled")
class RemindJob(ScheduledBackgroundJob):
    async def run_at(self, *args: object, **kwargs: object) -> None:
        pass


def test_module_functions_and_service_methods_are_stored_by_reference() -> None:
    registry = JobRegistry()
    assert registry.ref_for(module_function).ref == f"func:{__name__}:module_function"
    assert registry.ref_for(Greeter().greet).ref == f"method:{__name__}:Greeter.greet"
    assert registry.resolve_callable(f"method:{__name__}:Greeter.greet", None)("bob") == "hello bob"


def test_lambdas_closures_and_builtins_are_local() -> None:
    registry = JobRegistry()

    def closure() -> None:
        pass

    for func in (lambda: None, closure, print):
        ref = registry.ref_for(func)
        assert ref.local and ref.ref.startswith("local:")
        assert registry.resolve_callable(ref.ref, None) is func


@pytest.mark.parametrize(
    "ref",
    [
        "func:os:system",
        "func:subprocess:run",
        "func:builtins:eval",
        f"func:{__name__}:Greeter",
        "method:os:PathLike.__fspath__",
    ],
)
def test_a_stored_reference_cannot_name_arbitrary_callables(ref: str) -> None:
    registry = JobRegistry()
    assert not registry.knows(ref)
    with pytest.raises(UnknownJobError, match=r"can run|cannot resolve"):
        registry.resolve_callable(ref, None)


def test_job_classes_by_name_and_unknown_names() -> None:
    registry = JobRegistry()
    assert registry.register_job_class(RemindJob) == "job:RemindJob"
    assert registry.job_class("RemindJob") is RemindJob
    with pytest.raises(UnknownJobError, match=r"'Gone'.*registered: RemindJob"):
        registry.job_class("Gone")
