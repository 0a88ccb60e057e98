"""Tests of backbeat.codec: exact round-trips, tagging, error paths and the decode safety rule."""

from __future__ import annotations

import math
import os
import socket
import sys
import threading
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo
from decimal import Decimal
from enum import Enum, Flag, IntEnum, StrEnum
from typing import Any
from unittest.mock import AsyncMock, Mock
from uuid import UUID

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, Field

from backbeat.errors import DecodingError, EncodingError
from backbeat.model import codec

# --- types stored by import path (module level, so they can be imported back) ---


class Color(Enum):
    RED = "red"
    GREEN = "green"


class Priority(IntEnum):
    LOW = 1
    HIGH = 2


class Perm(Flag):
    READ = 1
    WRITE = 2


class Status(StrEnum):
    OPEN = "open"


class Shape(Enum):
    SQUARE = (1, 2)  # a tuple value must come back a tuple


@dataclass
class Point:
    x: int
    y: int


@dataclass(frozen=True)
class Frozen:
    name: str
    tags: tuple[str, ...] = ()


@dataclass
class Counter:
    name: str
    hits: int = field(init=False, default=0)


@dataclass(frozen=True)
class Stamped:
    name: str
    key: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", self.name.upper())


@dataclass(slots=True, kw_only=True)
class Slotted:
    a: int
    b: list[int] = field(default_factory=list)


class Outer:
    @dataclass
    class Inner:
        value: float


@dataclass
class Order:
    colors: list[Color]
    prices: dict[UUID, Decimal]
    customer: object = None
    when: datetime | None = None


class Customer(BaseModel):
    name: str
    joined: datetime
    tags: set[str] = set()
    score: float = 0.0
    code: int = Field(default=0, alias="customerCode")


class StrictCustomer(BaseModel):
    model_config = ConfigDict(strict=True)

    id: UUID
    birthday: date
    blob: bytes


class NeverDecoded(BaseModel):
    x: int = 0


class NotADataclass:
    pass


ID = UUID("12345678-1234-5678-1234-567812345678")


def _zone_info(key: str) -> tzinfo:
    from zoneinfo import ZoneInfo

    return ZoneInfo(key)


ROUND_TRIPS: list[Any] = [
    None,
    True,
    False,
    0,
    -7,
    2**63 - 1,
    -(2**63),
    2**64,
    -(2**200),
    10**5000,  # beyond Python's int/str conversion limit
    1.5,
    -0.0,
    float("inf"),
    float("-inf"),
    float("nan"),
    "",
    "héllo ✓",
    [],
    [1, "a", None],
    (),
    (1, (2, 3), [4]),
    set(),
    {1, "a", (2, 3)},
    frozenset({1, 2}),
    {},
    {"a": 1, "b": [1, 2]},
    {1: "one", 2: "two"},
    {ID: "by uuid", (1, 2): "by tuple", None: "none", Color.RED: "enum key"},
    {"__bb__": "tuple", "v": [1, 2]},
    {"__bb__": {"__bb__": 1}},
    b"",
    b"\x00\xffbinary",
    datetime(2024, 5, 17, 12, 30, 15, 123456),
    datetime(2024, 5, 17, 12, 30, tzinfo=UTC),
    datetime(2024, 5, 17, 12, 30, tzinfo=timezone(timedelta(hours=5, minutes=30))),
    datetime(2024, 7, 1, 9, 0, tzinfo=_zone_info("Europe/Paris")),
    datetime(2021, 11, 7, 1, 30, tzinfo=_zone_info("America/New_York"), fold=1),
    date(2024, 2, 29),
    time(23, 59, 59, 999999),
    time(8, 0, tzinfo=timezone(timedelta(hours=-3))),
    time(8, 0, tzinfo=_zone_info("Asia/Tokyo")),
    timedelta(days=-3, seconds=5, microseconds=7),
    ID,
    Decimal("1.10"),
    Decimal("-0"),
    Decimal("NaN"),
    Decimal("1E+400"),
    Color.GREEN,
    Priority.HIGH,
    Perm.READ | Perm.WRITE,
    Status.OPEN,
    Shape.SQUARE,
    Point(1, 2),
    Frozen("f", ("a", "b")),
    Stamped("abc"),
    Slotted(a=1, b=[2, 3]),
    Outer.Inner(0.5),
    Customer(
        name="Ada", joined=datetime(2020, 1, 1, tzinfo=UTC), tags={"x"}, score=float("nan"), customerCode=7
    ),
    StrictCustomer(id=ID, birthday=date(1990, 1, 1), blob=b"abc"),
]


def _same(a: object, b: object) -> bool:
    """Equal with the same types all the way down; nan equals nan and Decimal keeps its exponent."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float | Decimal):
        return repr(a) == repr(b)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return _same(list(a), list(b)) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, BaseModel) and isinstance(b, BaseModel):
        return _same(dict(a), dict(b))
    return a == b


def _is_plain_json(tree: object) -> bool:
    if tree is None or type(tree) in (str, bool):
        return True
    if type(tree) is int:
        return -(2**63) <= tree < 2**63
    if type(tree) is float:
        return math.isfinite(tree)
    if type(tree) is list:
        return all(_is_plain_json(item) for item in tree)
    if type(tree) is dict:
        return all(type(k) is str and _is_plain_json(v) for k, v in tree.items())
    return False


@pytest.mark.parametrize("value", ROUND_TRIPS, ids=lambda v: type(v).__name__)
def test_round_trip(value: object) -> None:
    tree = codec.encode(value)
    assert _is_plain_json(tree)
    assert _same(codec.decode(orjson.loads(orjson.dumps(tree))), value)
    assert _same(codec.loads(codec.dumps(value)), value)


@pytest.mark.parametrize(
    "value",
    [datetime(2021, 11, 7, 1, 30, tzinfo=_zone_info("America/New_York"), fold=1), time(8, 0, fold=1)],
)
def test_round_trip_keeps_zone_and_fold(value: datetime | time) -> None:
    back = codec.loads(codec.dumps(value))
    assert back.tzinfo == value.tzinfo
    assert back.fold == 1


def test_init_false_field_keeps_its_stored_state() -> None:
    counter = Counter("c")
    counter.hits = 5
    back = codec.decode(codec.encode(counter))
    assert type(back) is Counter
    assert back.hits == 5


def test_nested_structures_round_trip() -> None:
    order = Order(
        colors=[Color.RED, Color.GREEN],
        prices={ID: Decimal("9.99"), UUID(int=1): Decimal("0.01")},
        customer=Customer(name="Bob", joined=datetime(2021, 3, 4, tzinfo=_zone_info("Europe/Paris"))),
        when=datetime(2024, 1, 1, tzinfo=UTC),
    )
    value = {"orders": [order, Point(3, 4)], "by_point": {Frozen("k"): {Priority.LOW, Priority.HIGH}}}
    back = codec.loads(codec.dumps(value))
    assert back == value
    assert type(back["orders"][0].colors[0]) is Color
    assert type(next(iter(back["orders"][0].prices))) is UUID


def test_plain_json_is_stored_untagged() -> None:
    value = {"a": [1, "x", None, True, 1.5], "b": {"c": -2}}
    assert codec.encode(value) == value


def test_user_dict_with_tag_key_is_escaped() -> None:
    value = {"__bb__": "uuid", "v": str(ID)}
    tree = codec.encode(value)
    assert tree["__bb__"] == "dict"
    assert codec.decode(tree) == value


def test_errors_name_the_full_path() -> None:
    order = Order(colors=[], prices={}, customer=threading.Lock())
    with pytest.raises(
        EncodingError, match=r"^args\[1\]\['order'\]\.customer: cannot store a value of type lock"
    ):
        codec.encode([1, {"order": order}], path="args")


@pytest.mark.parametrize(
    ("value", "where"),
    [
        (["ok", "card \ud800 declined"], r"args\[1\]"),
        ([{"k\udc80": 1}], r"args\[0\]\['k\\udc80'\]"),  # a key: the path names it
        ([("é", "\ud800")], r"args\[0\]\[1\]"),
    ],
)
def test_a_str_no_utf8_can_write_is_refused_by_its_path(value: list[Any], where: str) -> None:
    with pytest.raises(EncodingError, match=rf"^{where}: a str with a lone surrogate \('\\ud[8c]\d\d'\)"):
        codec.encode(value, path="args")


def test_strs_beyond_ascii_are_stored_as_they_are() -> None:
    assert codec.encode(["é", {"ключ": "值 🎉"}]) == ["é", {"ключ": "值 🎉"}]


def test_error_message_names_type_and_module() -> None:
    with pytest.raises(EncodingError) as info:
        codec.encode({"client": AsyncMock()}, path="data")
    assert str(info.value) == (
        "data['client']: cannot store a value of type AsyncMock (module unittest.mock); "
        "store an id or configuration instead"
    )


def test_socket_inside_tuple_and_set_paths() -> None:
    with (
        socket.socket() as sock,
        pytest.raises(EncodingError, match=r"^kwargs\['conn'\]\[0\]\[1\]: .*socket"),
    ):
        codec.encode({"conn": [(1, sock)]}, path="kwargs")


def test_non_str_key_dict_value_path() -> None:
    with pytest.raises(EncodingError, match=r"^data\[UUID\('12345678-.*'\)\]: .*Mock"):
        codec.encode({ID: Mock()}, path="data")


def test_lambda_is_refused() -> None:
    with pytest.raises(EncodingError, match=r"^args\[0\]: cannot store a value of type function"):
        codec.encode([lambda: 1], path="args")


def test_local_class_is_refused() -> None:
    @dataclass
    class Local:
        x: int

    class LocalColor(Enum):
        RED = 1

    with pytest.raises(EncodingError, match=r"^kwargs\['p'\]: .*Local.*defined inside a function"):
        codec.encode({"p": Local(1)}, path="kwargs")
    with pytest.raises(EncodingError, match=r"^value\[0\]: .*LocalColor.*defined inside a function"):
        codec.encode([LocalColor.RED])


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (type("Tagged", (str,), {})("x"), "would come back as a plain str"),
        (datetime(2024, 1, 1, tzinfo=type("Custom", (tzinfo,), {})()), "use datetime.timezone or zoneinfo"),
        (bytearray(b"x"), "would come back|cannot store"),
    ],
)
def test_unsupported_values_are_refused(value: object, message: str) -> None:
    with pytest.raises(EncodingError, match=message):
        codec.encode(value)


def test_self_containing_list_is_refused() -> None:
    loop: list[object] = []
    loop.append(loop)
    with pytest.raises(EncodingError, match="contains itself"):
        codec.encode(loop)


def test_unknown_tag() -> None:
    with pytest.raises(DecodingError, match=r"^args\[0\]: unknown tag 'pickle'"):
        codec.decode([{"__bb__": "pickle", "v": "gASV"}], path="args")


def test_missing_module() -> None:
    tree = {"__bb__": "dataclass", "cls": "no_such_module.sub:Thing", "v": {}}
    with pytest.raises(DecodingError, match=r"^data\['x'\]: cannot import module 'no_such_module.sub'"):
        codec.decode({"x": tree}, path="data")


@pytest.mark.parametrize("tag", ["enum", "dataclass", "model"])
@pytest.mark.parametrize("path", ["os:system", "builtins:dict", f"{__name__}:NotADataclass"])
def test_non_allowed_callable_is_refused(tag: str, path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    system = Mock()
    monkeypatch.setattr(os, "system", system)
    with pytest.raises(DecodingError, match="refusing to build it"):
        codec.decode({"__bb__": tag, "cls": path, "v": {"command": "echo hi"}})
    system.assert_not_called()


@pytest.mark.parametrize(
    ("tree", "message"),
    [
        ({"__bb__": "uuid", "v": "not-a-uuid"}, "bad uuid value"),
        ({"__bb__": "tuple", "v": "abc"}, "expected a list"),
        ({"__bb__": "dict", "v": {"a": 1}}, "expected a list"),
        ({"__bb__": "int"}, "no 'v' field"),
        ({"__bb__": "enum", "v": 1}, "no 'cls'"),
        ({"__bb__": "enum", "cls": f"{__name__}:Color", "v": "blue"}, "'blue' is not a valid Color"),
        ({"__bb__": "dataclass", "cls": f"{__name__}:Point", "v": {"x": 1, "z": 2}}, "Point has no field z"),
        ({"__bb__": "dataclass", "cls": f"{__name__}:Point", "v": {"x": 1}}, "bad dataclass value"),
        ({"__bb__": "model", "cls": f"{__name__}:Customer", "v": {"name": 1}}, "bad model value"),
        ({"__bb__": "datetime", "v": "2024-01-01", "tz": "No/Such_Zone"}, "bad datetime value"),
    ],
)
def test_bad_values_are_refused(tree: dict[str, Any], message: str) -> None:
    with pytest.raises(DecodingError, match=message):
        codec.decode({"k": [tree]}, path="data")


def test_decode_names_nested_path() -> None:
    tree = {"__bb__": "dataclass", "cls": f"{__name__}:Order", "v": {"colors": [{"__bb__": "x", "v": 1}]}}
    with pytest.raises(DecodingError, match=r"^kwargs\['order'\]\.colors\[0\]: unknown tag 'x'"):
        codec.decode({"order": tree}, path="kwargs")


def test_decode_refuses_non_json() -> None:
    with pytest.raises(DecodingError, match="not a JSON value"):
        codec.decode({"a": object()})


def test_loads_refuses_invalid_json() -> None:
    with pytest.raises(DecodingError, match="not valid JSON"):
        codec.loads(b"{nope")


def test_works_without_pydantic(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pydantic", None)  # makes `import pydantic` fail
    assert codec.loads(codec.dumps(Point(1, 2))) == Point(1, 2)
    with pytest.raises(DecodingError, match="needs pydantic"):
        codec.decode({"__bb__": "model", "cls": f"{__name__}:NeverDecoded", "v": {}})


def test_import_paths() -> None:
    assert codec.import_path(Outer.Inner) == f"{__name__}:Outer.Inner"
    for obj in (Color, Point, Outer.Inner, Customer, os.path.join):
        assert codec.resolve_import_path(codec.import_path(obj)) is obj


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("no_colon", "not an import path"),
        ("os:", "not an import path"),
        (":system", "not an import path"),
        ("os:no_such_name", "no attribute 'no_such_name'"),
        ("tests.nope:X", "cannot import module"),
        ("mod:f.<locals>.g", "inside a function"),
    ],
)
def test_resolve_import_path_errors(path: str, message: str) -> None:
    with pytest.raises(DecodingError, match=message):
        codec.resolve_import_path(path)


_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text()
    | st.binary(max_size=20)
    | st.uuids()
    | st.decimals(allow_nan=False)
    | st.datetimes(timezones=st.none() | st.just(UTC) | st.timezones())
)
_hashables = st.none() | st.booleans() | st.integers() | st.text(max_size=5) | st.uuids()
_keys = st.text(max_size=8) | st.sampled_from(["__bb__", "v", "cls"])


@settings(max_examples=300, deadline=None, database=None)
@given(
    st.recursive(
        _scalars,
        lambda inner: (
            st.lists(inner, max_size=4)
            | st.tuples(inner, inner)
            | st.dictionaries(_keys, inner, max_size=4)
            | st.dictionaries(_hashables | st.tuples(_hashables, _hashables), inner, max_size=3)
            | st.frozensets(_hashables, max_size=4)
            | st.sets(_hashables | st.tuples(_hashables), max_size=4)
        ),
        max_leaves=20,
    )
)
def test_arbitrary_trees_round_trip(value: object) -> None:
    tree = codec.encode(value)
    assert _is_plain_json(tree)
    assert _same(codec.loads(orjson.dumps(tree)), value)
