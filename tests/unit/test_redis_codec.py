"""The Redis store's task documents (key layout 3): compact arrays when written; the lean objects of
layout 2 and the full ones of layout 1 still read."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backbeat.errors import CorruptRecordError
from backbeat.model.records import OVERLAPS, Task, TaskOptions
from backbeat.stores.redis import codec
from backbeat.stores.redis.keys import EPOCH, from_us, to_us

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
LIVE = b"1767603600000000|3|1|7|2|1767600000000000|1||success"
"""next run time, version, running, runs, failures, last run, max_instances, flags, last outcome."""


def stored(task: Task) -> Task:
    """``task`` after a trip through the store's encoding (its live fields as ``LIVE`` holds them)."""
    restored = codec.task_from(task.id.encode(), LIVE, codec.document(task))
    assert restored is not None
    return restored


def with_live(task: Task) -> Task:
    return task.copy(
        next_run_time=T0,
        version=3,
        running=1,
        runs=7,
        failures=2,
        last_run_at=datetime(2026, 1, 5, 8, tzinfo=UTC),
        last_outcome="success",
    )


def test_a_plain_task_keeps_only_what_differs_from_the_defaults() -> None:
    task = Task(
        id="t1",
        name="remind",
        job="func:app:remind",
        trigger={"type": "date"},
        next_run_time=T0,
        args=["A-1"],
        created_at=T0,
    )

    assert orjson.loads(codec.document(task)) == [
        "func:app:remind",
        {"type": "date"},
        1767603600000000,
        ["A-1"],
        {"options": {"misfire_grace_time": 1.0}},
    ]
    assert stored(task) == with_live(task)


def test_a_pending_one_shot_is_its_job_its_run_date_its_creation_and_its_args() -> None:
    run_date = "2100-01-01T00:00:00+00:00"
    task = Task(
        id="t1",
        name="remind",
        job="func:app:remind",
        trigger={"type": "date", "run_date": run_date, "timezone": "UTC"},
        next_run_time=T0,
        args=["A-1"],
        options=TaskOptions(misfire_grace_time=None),
        created_at=T0,
    )

    assert codec.document(task) == b'["func:app:remind",4102444800000000,1767603600000000,["A-1"]]'
    assert stored(task) == with_live(task)
    no_args = task.copy(args=[])
    assert codec.document(no_args) == b'["func:app:remind",4102444800000000,1767603600000000]'
    assert stored(no_args) == with_live(no_args)


def test_what_a_compact_form_would_not_give_back_exactly_is_kept_as_it_is() -> None:
    paris = timezone(timedelta(hours=1))
    task = Task(
        id="t1",
        name="other name",
        job="func:app:remind",
        trigger={"type": "date", "run_date": "2100-01-01T01:00:00+01:00", "timezone": "UTC"},
        next_run_time=T0,
        created_at=T0.astimezone(paris),
    )

    _, trigger, created, args, rest = orjson.loads(codec.document(task))
    assert trigger == task.trigger
    assert (created, args) == ("2026-01-05T10:00:00+01:00", [])
    assert rest["name"] == "other name"
    assert stored(task) == with_live(task)
    assert stored(task).created_at.utcoffset() == timedelta(hours=1)


def test_live_fields_at_their_defaults_may_be_empty() -> None:
    task = Task(id="t1", name="n", job="func:app:j", trigger={"type": "date"}, next_run_time=None)

    restored = codec.task_from(b"t1", b"||||||||", codec.document(task))

    assert restored == task


def test_a_lean_object_of_layout_2_is_read() -> None:
    task = Task(
        id="t4", name="n", job="func:app:j", trigger={"type": "date"}, next_run_time=T0, created_at=T0
    )
    lean = (
        b'{"name":"n","job":"func:app:j","trigger":{"type":"date"},"created_at":"2026-01-05T09:00:00+00:00"}'
    )

    assert codec.task_from(b"t4", LIVE, lean) == with_live(task)


def test_an_array_that_is_no_document_is_a_corrupt_record() -> None:
    with pytest.raises(CorruptRecordError, match="'t5'"):
        codec.task_from(b"t5", LIVE, b'["func:app:j"]')


def test_every_field_set_away_from_its_default_comes_back() -> None:
    task = Task(
        id="t2",
        name="n",
        job="func:app:j",
        trigger={"type": "interval", "seconds": 60},
        next_run_time=T0,
        args=[1, "two"],
        kwargs={"k": [3]},
        data={"order": "A-1"},
        tags=("a", "b"),
        options=TaskOptions(
            misfire_grace_time=None, coalesce=False, max_instances=3, timeout=9.5, retry={"max_attempts": 2}
        ),
        paused=True,
        orphaned="not registered",
        created_at=T0,
        trace_context={"traceparent": "00-x"},
    )

    assert stored(task) == with_live(task)


def test_a_full_document_of_layout_1_is_read_with_the_live_fields_winning() -> None:
    task = Task(
        id="t3",
        name="n",
        job="func:app:j",
        trigger={"type": "date"},
        next_run_time=None,
        args=["A-1"],
        created_at=T0,
        version=99,
    )

    restored = codec.task_from(b"t3", LIVE, task.to_bytes())

    assert restored == with_live(task)


def full_form_document(task: Task) -> list[object]:
    """The document as layout 3 first wrote it: the full dict of :meth:`Task.to_document`, filtered
    against the defaults, then compacted (what :func:`codec.document` now builds directly)."""
    defaults = Task(id="", name="", job="", trigger={}, next_run_time=None).to_document()
    one_shot = task.trigger.get("type") == "date"
    option_defaults = TaskOptions(misfire_grace_time=None).to_json() if one_shot else TaskOptions().to_json()
    skipped = {"id", "next_run_time", "version", "running", "runs", "failures", "last_outcome", "last_run_at"}
    skipped |= {"job", "trigger", "created_at", "args", "name", "options"}
    rest = {k: v for k, v in task.to_document().items() if k not in skipped and v != defaults[k]}
    options = {k: v for k, v in task.options.to_json().items() if v != option_defaults[k]}
    if options:
        rest["options"] = options
    if task.name != task.job.rpartition(":")[2]:
        rest["name"] = task.name
    trigger: object = task.trigger
    run_date = task.trigger.get("run_date")
    if (
        one_shot
        and task.trigger.keys() == {"type", "run_date", "timezone"}
        and task.trigger["timezone"] == "UTC"
    ):
        assert isinstance(run_date, str)
        micros = to_us(datetime.fromisoformat(run_date))
        if codec.iso(from_us(micros)) == run_date:
            trigger = micros
    created = task.created_at
    compact: list[object] = [
        task.job,
        trigger,
        to_us(created) if created.utcoffset() == timedelta(0) else created.isoformat(),
        task.args,
    ]
    if rest:
        compact.append(rest)
    elif not task.args:
        compact.pop()
    return compact


_RUN_DATE = {"type": "date", "run_date": "2100-01-01T00:00:00+00:00", "timezone": "UTC"}
_NEW_ONE_SHOT = Task(
    id="t1",
    name="remind",
    job="func:app:remind",
    trigger=_RUN_DATE,
    next_run_time=datetime(2100, 1, 1, tzinfo=UTC),
    args=["A-1"],
    options=TaskOptions(misfire_grace_time=None),
    created_at=T0,
)


@pytest.mark.parametrize(
    "task",
    [
        _NEW_ONE_SHOT,
        _NEW_ONE_SHOT.copy(args=[]),
        _NEW_ONE_SHOT.copy(name="other", kwargs={"a": 1}, data={}, tags=("x", "y")),
        _NEW_ONE_SHOT.copy(paused=True, orphaned="gone", trace_context={"traceparent": "00-1-2-01"}),
        _NEW_ONE_SHOT.copy(options=TaskOptions()),
        _NEW_ONE_SHOT.copy(options=TaskOptions(misfire_grace_time=None, max_instances=3, retry={"max": 2})),
        _NEW_ONE_SHOT.copy(next_run_time=None),
        _NEW_ONE_SHOT.copy(next_run_time=T0),
        _NEW_ONE_SHOT.copy(next_run_time=datetime(2100, 1, 1, 1, tzinfo=timezone(timedelta(hours=1)))),
        _NEW_ONE_SHOT.copy(trigger={**_RUN_DATE, "timezone": "Europe/Paris"}),
        _NEW_ONE_SHOT.copy(trigger={**_RUN_DATE, "run_date": "2100-01-01T00:00:00.000001+00:00"}),
        _NEW_ONE_SHOT.copy(
            trigger={"type": "interval", "seconds": 5, "timezone": "UTC"}, options=TaskOptions()
        ),
        _NEW_ONE_SHOT.copy(trigger={"type": "interval", "seconds": 5}, options=TaskOptions(coalesce=False)),
        _NEW_ONE_SHOT.copy(created_at=T0.astimezone(timezone(timedelta(hours=-3)))),
    ],
)
def test_the_document_is_the_full_forms_compacted(task: Task) -> None:
    assert orjson.loads(codec.document(task)) == full_form_document(task)
    assert stored(task) == with_live(task)


_ZONES = (UTC, timezone(timedelta(hours=1)), timezone(timedelta(hours=-5, minutes=-30)))
_TIMES = st.builds(
    lambda micros, zone: (EPOCH + timedelta(microseconds=micros)).astimezone(zone),
    st.integers(0, 4_102_444_800_000_000),  # 1970 to 2100
    st.sampled_from(_ZONES),
)
_TRIGGERS = st.one_of(
    _TIMES.map(lambda at: {"type": "date", "run_date": at.isoformat(), "timezone": "UTC"}),
    _TIMES.map(lambda at: {"type": "date", "run_date": at.isoformat(), "timezone": "Europe/Paris"}),
    st.builds(lambda seconds: {"type": "interval", "seconds": seconds}, st.integers(1, 10**6)),
    st.just({"type": "cron", "minute": "*/5", "timezone": "America/New_York", "dst": {"repeated": "first"}}),
)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)
_OPTIONS = st.builds(
    TaskOptions,
    misfire_grace_time=st.none() | st.sampled_from([1.0, 0.5, 30.0]),
    coalesce=st.booleans(),
    max_instances=st.integers(1, 5),
    timeout=st.none() | st.sampled_from([9.5, 60.0]),
    at_most_once=st.booleans(),
    executor=st.sampled_from(["default", "threadpool"]),
    retry=st.none() | st.just({"max_attempts": 3, "backoff_factor": 2.0}),
    circuit_breaker=st.none() | st.just({"name": "payments", "failure_threshold": 5}),
    overlap=st.sampled_from(sorted(OVERLAPS)),
)


@st.composite
def _tasks(draw: st.DrawFn) -> Task:
    job = draw(st.sampled_from(["func:app:remind", "method:app.Service:send", "job:Report"]))
    return Task(
        id=draw(st.text(min_size=1, max_size=12).filter(lambda s: "|" not in s)),
        name=draw(st.just(job.rpartition(":")[2]) | st.text(max_size=10)),
        job=job,
        trigger=draw(_TRIGGERS),
        next_run_time=None,
        args=draw(st.lists(_JSON, max_size=3)),
        kwargs=draw(st.dictionaries(st.text(max_size=5), _JSON, max_size=3)),
        data=draw(st.none() | st.dictionaries(st.text(max_size=5), _JSON, max_size=3)),
        tags=tuple(draw(st.lists(st.text(min_size=1, max_size=6), max_size=3, unique=True))),
        options=draw(_OPTIONS),
        paused=draw(st.booleans()),
        orphaned=draw(st.none() | st.just("job 'x' is not registered")),
        created_at=draw(_TIMES),
        trace_context=draw(st.none() | st.just({"traceparent": "00-abc-def-01"})),
    )


@given(_tasks())
@settings(max_examples=300, deadline=None)
def test_every_field_of_any_task_comes_back_from_its_document(task: Task) -> None:
    restored = stored(task)

    assert restored == with_live(task)
    assert restored.created_at.utcoffset() == task.created_at.utcoffset()
    assert type(restored.args) is list
    assert type(restored.tags) is tuple


def test_a_document_read_directly_equals_one_read_through_its_iso_text() -> None:
    """The direct reading of a compact document gives what reading it as a full document
    (its times as ISO text, as layout 1 wrote it) gives."""
    task = Task(
        id="t6",
        name="remind",
        job="func:app:remind",
        trigger={"type": "date", "run_date": "2026-01-05T09:00:00.000001+00:00", "timezone": "UTC"},
        next_run_time=None,
        args=["A-1", {"n": 1}],
        tags=("order", "A-1"),
        options=TaskOptions(misfire_grace_time=None, max_instances=2, retry={"max_attempts": 3}),
        created_at=T0 + timedelta(microseconds=7),
    )

    direct = codec.task_from(b"t6", LIVE, codec.document(task))
    full = codec.task_from(b"t6", LIVE, task.to_bytes())

    assert direct == full == with_live(task)


@pytest.mark.parametrize(
    "rest",
    [{"version": 5}, {"next_run_time": "2026-01-05T09:00:00+00:00"}, {"unknown": 1}],
    ids=["live field", "next run time", "unknown field"],
)
def test_a_last_part_with_fields_a_document_never_holds_is_read_as_before(rest: dict[str, object]) -> None:
    array = orjson.dumps(["func:app:j", {"type": "interval", "seconds": 5}, 1767603600000000, [], rest])

    restored = codec.task_from(b"t7", LIVE, array)

    assert restored is not None
    assert (restored.job, restored.trigger, restored.created_at) == (
        "func:app:j",
        {"type": "interval", "seconds": 5},
        T0,
    )
    assert restored.version == 3  # the live fields win over the document's


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (["func:app:j", 1, 1, [], {"options": [1]}], "not a valid task document"),
        (["func:app:j", 1, 1, [], {"options": {"overlap": "sometimes"}}], "unknown overlap policy"),
        (["func:app:j", 1, "yesterday", []], "not a valid task document"),
        (["func:app:j", 1, 1, [], {"kwargs": 3}], "not a valid task document"),
        (["func:app:j", 10**18, 1], "not a valid task document"),
        (["func:app:j", "soon", 1], "trigger is a str"),
        (["func:app:j", 1, 1, [], []], "fifth part is a list"),
    ],
)
def test_a_compact_document_that_cannot_be_read_is_a_corrupt_record(
    array: list[object], message: str
) -> None:
    with pytest.raises(CorruptRecordError, match=f"'t8'.*{message}"):
        codec.task_from(b"t8", LIVE, orjson.dumps(array))


@given(st.datetimes(timezones=st.sampled_from(_ZONES)), st.booleans())
def test_a_fire_time_is_spelled_as_isoformat_spells_it_in_utc(at: datetime, whole_second: bool) -> None:
    if whole_second:
        at = at.replace(microsecond=0)
    try:
        expected = at.astimezone(UTC).isoformat()
    except OverflowError:  # at the edges of datetime's range: nothing to spell
        return
    assert codec.iso(at) == expected
    assert codec.iso_us(to_us(at)) == expected
