"""The restricted unpickler: real APScheduler 3.11 job states load at every protocol it may have
used; a pickle naming anything else is refused before that thing is imported or called."""

from __future__ import annotations

import os
import pickle
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
import pytz
from apscheduler.job import Job
from apscheduler.schedulers.background import BackgroundScheduler

from backbeat.migrate.unpickle import RefusedPickleError, loads


def job(*args: Any, **kwargs: Any) -> None:
    """What the jobs call (never called here)."""


@pytest.fixture(scope="module")
def jobs() -> Iterator[list[Job]]:
    """Jobs of every trigger kind, made by APScheduler's own add_job (on its memory job store)."""
    scheduler = BackgroundScheduler(timezone="Europe/Paris")
    scheduler.start(paused=True)
    args = [1, 2**70, "x", b"raw", {1, 2}, frozenset({3}), (4, 5), date(2026, 1, 1), Decimal("1.5")]
    kwargs = {"when": datetime(2026, 1, 1, tzinfo=UTC), "id": UUID(int=7), "pause": timedelta(seconds=3)}
    made = [
        scheduler.add_job(job, "cron", day="2nd mon,last", month="jan-mar", hour="*/2", jitter=5),
        scheduler.add_job(
            job, "cron", week="1-10", day_of_week="mon-fri", timezone=pytz.timezone("Asia/Tokyo")
        ),
        scheduler.add_job(job, "interval", minutes=5, timezone=timezone(timedelta(hours=-3)), args=args),
        scheduler.add_job(job, "date", run_date=datetime(2030, 1, 1, 10), kwargs=kwargs),
        scheduler.add_job(job, "calendarinterval", months=1, hour=3, end_date=date(2031, 1, 1)),
    ]
    yield made
    scheduler.shutdown(wait=False)


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_apscheduler_job_states_load_as_they_were(jobs: list[Job], protocol: int) -> None:
    for made in jobs:
        state = made.__getstate__()
        loaded = loads(pickle.dumps(state, protocol))
        assert {k: v for k, v in loaded.items() if k != "trigger"} == {
            k: v for k, v in state.items() if k != "trigger"
        }
        assert repr(loaded["trigger"]) == repr(state["trigger"])
        after = datetime(2026, 3, 1, tzinfo=UTC)
        if "jitter" not in repr(state["trigger"]):
            assert loaded["trigger"].get_next_fire_time(None, after) == state["trigger"].get_next_fire_time(
                None, after
            )


class RunsACommand:
    """What an attacker writes into a job store: unpickling it would run a shell command."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[Any, ...]:
        return os.system, (self.command,)


def test_a_pickle_that_would_call_os_system_is_refused_and_does_not_run(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    evil = pickle.dumps({"id": "evil", "func": "x:y", "args": (RunsACommand(f"touch {marker}"),)})
    assert pickle.loads(evil) == {"id": "evil", "func": "x:y", "args": (0,)} and marker.exists()
    marker.unlink()  # the plain unpickler ran it: the pickle is live

    with pytest.raises(RefusedPickleError, match=r"names posix\.system"):
        loads(evil)

    assert not marker.exists()


class Order:
    """A user's class, as APScheduler pickles an argument of that type."""

    def __init__(self, number: int) -> None:
        self.number = number


@pytest.mark.parametrize(
    ("payload", "named"),
    [
        (pickle.dumps({"args": (Order(1),)}), f"{__name__}.Order"),
        (pickle.dumps(eval), "builtins.eval"),
        (pickle.dumps(getattr), None),  # alone it is harmless: used, it is guarded below
        (pickle.dumps(Job), "apscheduler.job.Job"),
    ],
    ids=["user class", "eval", "getattr", "Job"],
)
def test_globals_outside_the_list_are_refused(payload: bytes, named: str | None) -> None:
    if named is None:
        assert callable(loads(payload))
        return
    with pytest.raises(RefusedPickleError, match=named.replace(".", r"\.")):
        loads(payload)


def test_the_guarded_helpers_do_only_what_job_states_need() -> None:
    getattr_ = loads(pickle.dumps(getattr))
    with pytest.raises(RefusedPickleError, match=r"getattr\(date, 'today'\)"):
        getattr_(date, "today")
    protocol_2_bytes = pickle.dumps(b"\x00\xff", 2)
    assert loads(protocol_2_bytes) == b"\x00\xff"
    with pytest.raises(RefusedPickleError, match=r"_codecs\.encode with 'utf-16'"):
        loads(protocol_2_bytes.replace(b"latin1", b"utf-16"))  # same length: the pickle stays valid


def test_a_corrupt_pickle_is_refused_with_the_reason() -> None:
    with pytest.raises(RefusedPickleError, match="not a valid pickle"):
        loads(pickle.dumps({"id": "a"})[:-3])
