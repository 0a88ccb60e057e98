"""Turns task arguments and job data into JSON trees and back, exactly and without pickle.

Plain JSON values (dict with str keys, list, str, int, float, bool, None) are stored as they
are. Everything else becomes a tagged dict ``{"__bb__": "<tag>", "v": ...}``: big ints, nan and
inf, tuple, set, frozenset, dicts with non-str keys (or a ``"__bb__"`` key), bytes, datetime,
date, time, timedelta, UUID, Decimal, Enum members, dataclass instances and pydantic models.
Classes are stored by import path and, on decode, only Enum, dataclass and pydantic model
classes are ever called, so stored data cannot run arbitrary callables.
"""

from __future__ import annotations

import base64
import dataclasses
import importlib
import sys
from collections.abc import Callable, Iterable
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from enum import Enum
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

import orjson

from backbeat.errors import DecodingError, EncodingError
from backbeat.model.records import JSON

_TAG = "__bb__"
_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1  # signed 64 bits: what orjson, BSON and friends all accept


class _Failure(Exception):
    """Internal: carries a reason up the recursion while each level adds its path segment."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.segments: list[str] = []

    def at(self, segment: str) -> _Failure:
        self.segments.append(segment)
        return self

    def message(self, path: str) -> str:
        return f"{path}{''.join(reversed(self.segments))}: {self.reason}"


def encode(value: object, *, path: str = "value") -> JSON:
    """Turn ``value`` into a tree of JSON types that :func:`decode` turns back into an equal value.

    Args:
        value: What to store.
        path: Name of ``value`` used in error messages (``"args"``, ``"kwargs"``, ...).

    Raises:
        EncodingError: some part of ``value`` cannot be stored; the message names its field path.
    """
    try:
        return _enc(value)
    except _Failure as failure:
        raise EncodingError(failure.message(path)) from failure.__cause__
    except RecursionError:
        raise EncodingError(f"{path}: nested too deeply, or contains itself") from None


def decode(tree: JSON, *, path: str = "value") -> Any:
    """Rebuild the value :func:`encode` turned into ``tree``.

    Raises:
        DecodingError: ``tree`` holds an unknown tag, a class that cannot be imported or is not
            allowed, or a malformed value; the message names its field path.
    """
    try:
        return _dec(tree)
    except _Failure as failure:
        raise DecodingError(failure.message(path)) from failure.__cause__
    except RecursionError:
        raise DecodingError(f"{path}: nested too deeply") from None


def dumps(value: object) -> bytes:
    """``value`` encoded and serialized as JSON bytes."""
    try:
        return orjson.dumps(encode(value))
    except orjson.JSONEncodeError as exc:  # e.g. a str holding a lone surrogate
        raise EncodingError(f"value: cannot be written as JSON: {exc}") from exc


def loads(raw: bytes | str) -> Any:
    """The value serialized by :func:`dumps`."""
    try:
        tree = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise DecodingError(f"value: not valid JSON: {exc}") from exc
    return decode(tree)


def import_path(obj: Any) -> str:
    """The ``"module:qualname"`` path of a class or function (not checked to be importable)."""
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str):
        raise EncodingError(f"{obj!r} has no import path (no __module__ or __qualname__)")
    return f"{module}:{qualname}"


def resolve_import_path(path: str) -> Any:
    """Import the module of a ``"module:qualname"`` path and return the object it names.

    Raises:
        DecodingError: the path is malformed, the module cannot be imported or lacks the name.
    """
    module_name, _, qualname = path.partition(":")
    if not module_name or not qualname:
        raise DecodingError(f"{path!r} is not an import path of the form 'module:qualname'")
    if "<" in qualname:
        raise DecodingError(f"{path!r} names something defined inside a function; it cannot be imported")
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as exc:  # a module's own import-time failure can be anything
        raise DecodingError(f"cannot import module {module_name!r} (from {path!r}): {exc!r}") from exc
    for part in qualname.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise DecodingError(f"cannot resolve {path!r}: no attribute {part!r}") from None
    return obj


# --- encoding ---


def _enc(value: Any) -> JSON:
    kind = type(value)
    if kind is str:
        return value if value.isascii() else _utf8(value)
    if kind is bool or value is None:
        return value
    if kind is int:
        return value if _INT_MIN <= value <= _INT_MAX else {_TAG: "int", "v": hex(value)}
    if kind is float:
        # x - x is 0.0 for every finite float and nan for nan and inf, which JSON cannot hold
        return value if value - value == 0.0 else {_TAG: "float", "v": repr(value)}
    if kind is dict:
        return _enc_dict(value)
    if kind is list:
        return _enc_items(value)
    encoder = _ENCODERS.get(kind)
    return encoder(value) if encoder is not None else _enc_object(value)


def _utf8(text: str) -> str:
    """``text``, which JSON can hold unless it has a lone surrogate (no UTF-8 can write it)."""
    try:
        text.encode()
    except UnicodeEncodeError as exc:
        bad = text[exc.start : exc.end]
        raise _Failure(f"a str with a lone surrogate ({bad!r}) cannot be stored") from None
    return text


def _enc_items(items: Iterable[object]) -> list[JSON]:
    out: list[JSON] = []
    for item in items:
        try:
            out.append(_enc(item))
        except _Failure as failure:
            failure.at(f"[{len(out)}]")  # the failed item is the next index
            raise
    return out


def _enc_dict(value: dict[Any, Any]) -> JSON:
    if _TAG in value:
        return _enc_pairs(value)
    out: dict[str, JSON] = {}
    for key, item in value.items():
        if type(key) is not str:
            return _enc_pairs(value)
        try:
            if not key.isascii():
                _utf8(key)
            out[key] = _enc(item)
        except _Failure as failure:
            failure.at(f"[{key!r}]")
            raise
    return out


def _enc_pairs(value: dict[Any, Any]) -> JSON:
    pairs = [
        [_at(_enc, key, "<key #{}>", i), _at(_enc, item, "[{!r}]", key)]
        for i, (key, item) in enumerate(value.items())
    ]
    return {_TAG: "dict", "v": pairs}


def _enc_stamp(tag: str, value: datetime | time) -> JSON:
    tz = value.tzinfo
    key = None
    if tz is not None and type(tz) is not timezone:
        if type(tz) is not ZoneInfo or not tz.key:
            raise _Failure(
                f"cannot store a {tag} whose tzinfo is a {type(tz).__qualname__} "
                f"(module {type(tz).__module__}); use datetime.timezone or zoneinfo.ZoneInfo"
            )
        key = tz.key  # the isoformat keeps the wall time and offset; the key restores the zone
    out: dict[str, JSON] = {_TAG: tag, "v": value.isoformat()}
    if key is not None:
        out["tz"] = key
    if value.fold:
        out["fold"] = 1
    return out


def _enc_object(value: object) -> JSON:
    kind = type(value)
    if isinstance(value, Enum):
        cls_path = _class_path(kind, "Enum member")
        return {_TAG: "enum", "cls": cls_path, "v": _at(_enc, value.value, ".value", None)}
    if dataclasses.is_dataclass(kind):
        cls_path = _class_path(kind, "dataclass instance")
        return {_TAG: "dataclass", "cls": cls_path, "v": _enc_dataclass_fields(value)}
    pydantic = sys.modules.get("pydantic")  # a model can only exist if pydantic is already imported
    if pydantic is not None and isinstance(value, pydantic.BaseModel):
        cls_path = _class_path(kind, "pydantic model")
        try:
            dumped = value.model_dump(mode="json", by_alias=True, round_trip=True)
        except Exception as exc:
            raise _Failure(f"cannot dump pydantic model {kind.__qualname__}: {exc}") from exc
        return {_TAG: "model", "cls": cls_path, "v": _enc(dumped)}
    reason = f"cannot store a value of type {kind.__qualname__} (module {kind.__module__})"
    for base in (str, int, float, dict, list, tuple, set, frozenset, bytes):
        if isinstance(value, base):
            raise _Failure(f"{reason}: it would come back as a plain {base.__name__}; convert it first")
    raise _Failure(f"{reason}; store an id or configuration instead")


def _at(convert: Callable[[Any], Any], value: Any, segment: str, arg: object) -> Any:
    """``convert(value)``; a failure's path gets ``segment.format(arg)``, formatted only then."""
    try:
        return convert(value)
    except _Failure as failure:
        failure.at(segment.format(arg))
        raise


def _enc_dataclass_fields(value: object) -> dict[str, JSON]:
    out: dict[str, JSON] = {}
    for name in _dataclass_fields(type(value))[0]:
        try:
            item = getattr(value, name)
        except AttributeError:
            raise _Failure(f"field {name!r} of {type(value).__qualname__} is not set") from None
        out[name] = _at(_enc, item, ".{}", name)
    return out


_ENCODERS: dict[type, Callable[[Any], JSON]] = {
    tuple: lambda v: {_TAG: "tuple", "v": _enc_items(v)},
    set: lambda v: {_TAG: "set", "v": _enc_items(v)},
    frozenset: lambda v: {_TAG: "frozenset", "v": _enc_items(v)},
    bytes: lambda v: {_TAG: "bytes", "v": base64.b64encode(v).decode("ascii")},
    datetime: lambda v: _enc_stamp("datetime", v),
    date: lambda v: {_TAG: "date", "v": v.isoformat()},
    time: lambda v: _enc_stamp("time", v),
    timedelta: lambda v: {_TAG: "timedelta", "v": [v.days, v.seconds, v.microseconds]},
    UUID: lambda v: {_TAG: "uuid", "v": str(v)},
    Decimal: lambda v: {_TAG: "decimal", "v": str(v)},
}

_CLASS_PATHS: dict[type, str] = {}
_DATACLASS_FIELDS: dict[type, tuple[tuple[str, ...], frozenset[str]]] = {}


def _class_path(cls: type, what: str) -> str:
    """The import path of ``cls``, checked once to lead back to ``cls`` itself."""
    cached = _CLASS_PATHS.get(cls)
    if cached is not None:
        return cached
    where = f"cannot store a {what} of class {cls.__qualname__} (module {cls.__module__})"
    if "<locals>" in cls.__qualname__:
        raise _Failure(f"{where}: it is defined inside a function, so it cannot be imported back")
    path = import_path(cls)
    try:
        found = resolve_import_path(path)
    except DecodingError as exc:
        raise _Failure(f"{where}: it cannot be imported back ({exc})") from None
    if found is not cls:
        raise _Failure(f"{where}: its import path {path!r} leads to another object")
    _CLASS_PATHS[cls] = path
    return path


def _dataclass_fields(cls: type) -> tuple[tuple[str, ...], frozenset[str]]:
    """The names of a dataclass's fields, and of those its ``__init__`` takes."""
    found = _DATACLASS_FIELDS.get(cls)
    if found is None:
        fields = dataclasses.fields(cls)
        found = tuple(f.name for f in fields), frozenset(f.name for f in fields if f.init)
        _DATACLASS_FIELDS[cls] = found
    return found


# --- decoding ---


def _dec(tree: JSON) -> Any:
    kind = type(tree)
    if kind is dict:
        tag = tree.get(_TAG)
        return _dec_dict(tree) if tag is None else _dec_tagged(tag, tree)
    if kind is list:
        return _dec_items(tree)
    if kind is str or kind is int or kind is float or kind is bool or tree is None:
        return tree
    raise _Failure(f"a {kind.__qualname__} is not a JSON value")


def _dec_items(items: list[JSON]) -> list[Any]:
    out: list[Any] = []
    for item in items:
        try:
            out.append(_dec(item))
        except _Failure as failure:
            failure.at(f"[{len(out)}]")
            raise
    return out


def _dec_dict(tree: dict[str, JSON]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, item in tree.items():
        try:
            out[key] = _dec(item)
        except _Failure as failure:
            failure.at(f"[{key!r}]")
            raise
    return out


def _dec_tagged(tag: object, tree: dict[str, JSON]) -> Any:
    decoder = _DECODERS.get(tag) if type(tag) is str else None
    if decoder is None:
        raise _Failure(f"unknown tag {tag!r} (written by a newer backbeat?)")
    if "v" not in tree:
        raise _Failure(f"{tag} value has no 'v' field")
    try:
        return decoder(tree, tree["v"])
    except _Failure:
        raise
    except Exception as exc:  # a malformed value, or a class refusing its stored fields
        raise _Failure(f"bad {tag} value: {exc!r}") from exc


def _as_list(items: JSON) -> list[JSON]:
    if type(items) is not list:
        raise TypeError(f"expected a list, got a {type(items).__qualname__}")
    return items


def _dec_pairs(_: dict[str, JSON], pairs: JSON) -> dict[Any, Any]:
    out: dict[Any, Any] = {}
    for index, (key, item) in enumerate(_as_list(pairs)):
        decoded_key = _at(_dec, key, "<key #{}>", index)
        out[decoded_key] = _at(_dec, item, "[{!r}]", decoded_key)
    return out


def _dec_stamp(cls: type[datetime] | type[time], tree: dict[str, JSON], text: str) -> datetime | time:
    value = cls.fromisoformat(text)
    if "tz" in tree:
        value = value.replace(tzinfo=ZoneInfo(tree["tz"]))
    return value.replace(fold=1) if tree.get("fold") else value


def _is_model(obj: object) -> bool:
    try:
        from pydantic import BaseModel
    except ImportError:
        raise _Failure("decoding a pydantic model needs pydantic, which is not installed") from None
    return isinstance(obj, type) and issubclass(obj, BaseModel)


_ALLOWED: dict[str, tuple[Callable[[object], bool], str]] = {
    "enum": (lambda obj: isinstance(obj, type) and issubclass(obj, Enum), "an Enum class"),
    "dataclass": (lambda obj: isinstance(obj, type) and dataclasses.is_dataclass(obj), "a dataclass"),
    "model": (_is_model, "a pydantic model class"),
}
_DECODE_CLASSES: dict[tuple[str, str], Any] = {}


def _stored_class(tag: str, tree: dict[str, JSON]) -> Any:
    """The class a tagged value names, refused unless it is of the kind the tag allows."""
    path = tree.get("cls")
    if type(path) is not str:
        raise _Failure(f"{tag} value has no 'cls' import path")
    cls = _DECODE_CLASSES.get((tag, path))
    if cls is None:
        try:
            cls = resolve_import_path(path)
        except DecodingError as exc:
            raise _Failure(str(exc)) from None
        allowed, what = _ALLOWED[tag]
        if not allowed(cls):
            raise _Failure(f"{path!r} is not {what}; refusing to build it from stored data")
        _DECODE_CLASSES[(tag, path)] = cls
    return cls


def _dec_dataclass(tree: dict[str, JSON], fields: dict[str, JSON]) -> Any:
    cls = _stored_class("dataclass", tree)
    names, init_names = _dataclass_fields(cls)
    unknown = fields.keys() - set(names)
    if unknown:
        raise _Failure(f"{cls.__qualname__} has no field {', '.join(sorted(unknown))}")
    values = {name: _at(_dec, item, ".{}", name) for name, item in fields.items()}
    obj = cls(**{name: item for name, item in values.items() if name in init_names})
    for name, item in values.items():
        if name not in init_names:  # init=False fields: restore their stored state
            object.__setattr__(obj, name, item)
    return obj


_DECODERS: dict[str, Callable[[dict[str, JSON], Any], Any]] = {
    "int": lambda _, v: int(v, 0),
    "float": lambda _, v: float(v),
    "tuple": lambda _, v: tuple(_dec_items(_as_list(v))),
    "set": lambda _, v: set(_dec_items(_as_list(v))),
    "frozenset": lambda _, v: frozenset(_dec_items(_as_list(v))),
    "dict": _dec_pairs,
    "bytes": lambda _, v: base64.b64decode(v, validate=True),
    "datetime": lambda t, v: _dec_stamp(datetime, t, v),
    "date": lambda _, v: date.fromisoformat(v),
    "time": lambda t, v: _dec_stamp(time, t, v),
    "timedelta": lambda _, v: timedelta(days=v[0], seconds=v[1], microseconds=v[2]),
    "uuid": lambda _, v: UUID(v),
    "decimal": lambda _, v: Decimal(v),
    "enum": lambda t, v: _stored_class("enum", t)(_at(_dec, v, ".value", None)),
    "dataclass": _dec_dataclass,
    "model": lambda t, v: _stored_class("model", t).model_validate(_dec(v), strict=False),
}
