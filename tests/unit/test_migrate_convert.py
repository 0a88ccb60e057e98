"""Job states written by APScheduler 3.11's own ``add_job`` become tasks that fire when APScheduler's
triggers would, with the job's id, callable, arguments and options."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
import pytz
from apscheduler.job import Job
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.combining import OrTrigger
from apscheduler.triggers.cron import CronTrigger

from backbeat.migrate.convert import JobRefusedError, job_ref, parse_func_map, to_task
from backbeat.model import codec, triggers

NOW = datetime(2026, 3, 20, 12, 0, tzinfo=UTC)  # ten days before Europe's spring DST change


def job(*args: Any, **kwargs: Any) -> None:
    """What the jobs call (never called here)."""


class Service:
    def method(self) -> None:
        """A method APScheduler names as ``module:Service.method``."""


@pytest.fixture
def scheduler() -> Iterator[BackgroundScheduler]:
    made = BackgroundScheduler(timezone="Europe/Paris")
    made.start(paused=True)
    yield made
    made.shutdown(wait=False)


def state(made: Job) -> bytes:
    return pickle.dumps(made.__getstate__(), pickle.HIGHEST_PROTOCOL)


def aps_fire_times(made: Job, count: int) -> list[datetime]:
    """The fire times APScheduler's scheduler would use: each from the previous one."""
    times: list[datetime] = []
    previous = made.next_run_time
    while previous is not None and len(times) < count:
        times.append(previous.astimezone(UTC))
        previous = made.trigger.get_next_fire_time(previous, previous)
    return times


def backbeat_fire_times(spec: triggers.TriggerSpec, first: datetime, count: int) -> list[datetime]:
    times: list[datetime] = []
    following: datetime | None = first
    while following is not None and len(times) < count:
        times.append(following)
        following = triggers.next_fire_time(spec, following, following)
    return times


@pytest.mark.parametrize(
    ("trigger", "args"),
    [
        # 2030-03-31 02:00-03:00 does not exist in Paris: APScheduler and backbeat skip it alike
        (
            "cron",
            {
                "hour": "1-3",
                "minute": "*/20",
                "start_date": datetime(2030, 3, 29),
                "timezone": "Europe/Paris",
            },
        ),
        (
            "cron",
            {
                "day": "last fri",
                "hour": 8,
                "start_date": datetime(2030, 4, 1),
                "end_date": datetime(2031, 1, 1),
            },
        ),
        ("cron", {"day_of_week": "mon-fri", "hour": 9, "timezone": "America/New_York"}),
        (
            "cron",
            {"day": "1,15", "hour": 23, "timezone": pytz.timezone("Asia/Kolkata")},
        ),  # older releases' zones
        ("interval", {"hours": 7, "start_date": datetime(2026, 3, 1, 0, 30), "timezone": "Asia/Tokyo"}),
        ("interval", {"minutes": 90, "start_date": datetime(2030, 3, 20), "end_date": datetime(2030, 3, 22)}),
        ("date", {"run_date": datetime(2030, 6, 1, 10, 30), "timezone": "Australia/Sydney"}),
        ("calendarinterval", {"months": 1, "hour": 2, "minute": 30, "start_date": date(2026, 1, 31)}),
    ],
    ids=[
        "cron-dst",
        "cron-start-end",
        "cron-weekdays-tz",
        "cron-pytz",
        "interval-tz",
        "interval-end",
        "date",
        "calendar",
    ],
)
def test_each_trigger_fires_when_apschedulers_does(
    scheduler: BackgroundScheduler, trigger: str, args: dict[str, Any]
) -> None:
    made = scheduler.add_job(job, trigger, **args)

    task = to_task(made.id, state(made), func_map={}, now=NOW)

    assert task.next_run_time == made.next_run_time.astimezone(UTC)
    expected = aps_fire_times(made, 40)
    assert backbeat_fire_times(task.trigger, expected[0], 40) == expected
    assert task.trigger == triggers.make_trigger_spec(made.trigger, now=NOW)


def test_the_job_keeps_its_id_name_callable_arguments_and_options(scheduler: BackgroundScheduler) -> None:
    args = (1, 2**70, "x", b"raw", (4, 5), date(2026, 1, 1))
    kwargs = {"when": datetime(2026, 1, 1, tzinfo=UTC), "tags": {"a", "b"}}
    made = scheduler.add_job(
        job, "interval", seconds=30, id="report-7", name="report", args=args, kwargs=kwargs,
        misfire_grace_time=None, coalesce=False, max_instances=3, executor="default", jitter=4,
    )  # fmt: skip

    task = to_task("report-7", state(made), func_map={}, now=NOW)

    assert (task.id, task.name, task.job) == ("report-7", "report", f"func:{__name__}:job")
    assert tuple(codec.decode(task.args)) == args and codec.decode(task.kwargs) == kwargs
    assert task.options.misfire_grace_time is None and task.options.coalesce is False
    assert task.options.max_instances == 3 and task.options.executor == "default"
    assert task.trigger["jitter"] == 4 and task.trigger["seconds"] == 30
    assert task.next_run_time == made.next_run_time.astimezone(UTC)  # jittered by APScheduler: kept
    assert not task.paused


def test_a_paused_job_is_a_paused_task_due_at_its_next_fire_time_after_now(
    scheduler: BackgroundScheduler,
) -> None:
    made = scheduler.add_job(job, "cron", hour=6, timezone="UTC")
    made.pause()

    task = to_task(made.id, state(made), func_map={}, now=NOW)

    assert task.paused and task.next_run_time == datetime(2026, 3, 21, 6, tzinfo=UTC)


def test_callables_map_to_backbeat_references() -> None:
    assert job_ref("app.jobs:send", {}) == "func:app.jobs:send"
    assert job_ref("app.jobs:Mailer.send", {}) == "method:app.jobs:Mailer.send"
    assert job_ref("old.jobs:send", {"old.jobs:send": "new.jobs:send"}) == "func:new.jobs:send"
    assert job_ref("old:Report", {"old:Report": "job:DailyReport"}) == "job:DailyReport"
    with pytest.raises(JobRefusedError, match="'nothing' is not a 'module:qualname' reference"):
        job_ref("nothing", {})


def test_map_func_pairs_are_parsed_or_refused_naming_the_pair() -> None:
    assert parse_func_map(["a:f=b:g", " c:h = d:i "]) == {"a:f": "b:g", "c:h": "d:i"}
    with pytest.raises(ValueError, match=r"--map-func 'a:f' is not OLD=NEW"):
        parse_func_map(["a:f"])


def test_an_instance_method_job_is_refused_naming_the_instance_class(scheduler: BackgroundScheduler) -> None:
    made = scheduler.add_job(Service().method, "interval", minutes=1)

    with pytest.raises(JobRefusedError, match=rf"pickled state was refused: it names {__name__}\.Service"):
        to_task(made.id, state(made), func_map={}, now=NOW)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"trigger": OrTrigger([CronTrigger(hour=1)])}, "unsupported APScheduler trigger OrTrigger"),
        ({"args": (bytearray(b"x"),)}, r"args\[0\]: cannot store a value of type bytearray"),
        ({"id": "another"}, "its state holds another id, 'another'"),
        ({"max_instances": 0}, "max_instances 0 is not a positive integer"),
        ({"next_run_time": datetime(2026, 1, 1)}, "is not a timezone-aware datetime"),
        ({"name": "n" * 1025}, r"its name 'n+'\.\.\. is 1,025 bytes long in UTF-8, past the 1,024"),
        ({"name": "a\x00b"}, r"its name 'a\\x00b' holds a NUL character"),
    ],
    ids=[
        "combining trigger",
        "non-JSON argument",
        "id",
        "max_instances",
        "naive next run time",
        "long name",
        "NUL",
    ],
)
def test_a_job_that_cannot_be_migrated_is_refused_saying_why(
    scheduler: BackgroundScheduler, change: dict[str, Any], message: str
) -> None:
    made = scheduler.add_job(job, "interval", minutes=1, id="j1")
    data = pickle.dumps({**made.__getstate__(), **change})

    with pytest.raises(JobRefusedError, match=message):
        to_task("j1", data, func_map={}, now=NOW)


def test_a_job_whose_id_no_store_keeps_is_refused(scheduler: BackgroundScheduler) -> None:
    long_id = "j" * 1025
    made = scheduler.add_job(job, "interval", minutes=1, id=long_id)

    with pytest.raises(JobRefusedError, match=r"its id 'j+'\.\.\. is 1,025 bytes long in UTF-8"):
        to_task(long_id, state(made), func_map={}, now=NOW)


def test_a_job_whose_id_is_empty_is_refused(scheduler: BackgroundScheduler) -> None:
    made = scheduler.add_job(job, "interval", minutes=1, id="j1")
    data = pickle.dumps({**made.__getstate__(), "id": ""})

    with pytest.raises(JobRefusedError, match="its id is empty"):
        to_task("", data, func_map={}, now=NOW)


def test_a_pickle_that_is_not_a_job_state_is_refused() -> None:
    with pytest.raises(JobRefusedError, match="its state is a list, not an APScheduler 3 job state"):
        to_task("j1", pickle.dumps([1, 2]), func_map={}, now=NOW)


def test_a_date_job_in_the_past_keeps_its_time_and_the_engine_judges_the_misfire(
    scheduler: BackgroundScheduler,
) -> None:
    made = scheduler.add_job(job, "date", run_date=datetime(2026, 3, 1, tzinfo=UTC))
    data = pickle.dumps({**made.__getstate__(), "next_run_time": datetime(2026, 3, 1, tzinfo=UTC)})

    task = to_task(made.id, data, func_map={}, now=NOW)

    assert task.next_run_time == datetime(2026, 3, 1, tzinfo=UTC) < NOW
    assert triggers.is_one_shot(task.trigger) and task.options.misfire_grace_time == 1
    assert task.next_run_time - timedelta(0) == datetime.fromisoformat(task.trigger["run_date"])
