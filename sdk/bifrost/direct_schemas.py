"""JSON Schemas of the simple annotations written out directly, exactly as pydantic would produce them.

Most workflow parameters are plain (`str`, `int | None`, `list[str]`, `Literal["a", "b"]`, `date`) and most
defaults are JSON literals; building a `TypeAdapter` for each of them is what made schema building slow. The
schemas here follow pydantic's output key for key (keys sorted, as pydantic sorts them); anything else — models,
enums, constrained `Annotated` types, unions of several types, tuples, sets — returns None and goes through
pydantic. `tests/sdk/test_direct_schemas.py` holds both paths equal.
"""

from __future__ import annotations

import collections.abc
import datetime
import math
import types
import typing
import uuid
from typing import Any

_LEAF_SCHEMAS: dict[Any, dict[str, Any]] = {
    Any: {},
    str: {"type": "string"},
    int: {"type": "integer"},
    float: {"type": "number"},
    bool: {"type": "boolean"},
    type(None): {"type": "null"},
    datetime.date: {"format": "date", "type": "string"},
    datetime.datetime: {"format": "date-time", "type": "string"},
    datetime.time: {"format": "time", "type": "string"},
    datetime.timedelta: {"format": "duration", "type": "string"},
    uuid.UUID: {"format": "uuid", "type": "string"},
    dict: {"additionalProperties": True, "type": "object"},
}
_SEQUENCES = (list, collections.abc.Sequence)


def annotation_schema(annotation: Any) -> dict[str, Any] | None:
    """The JSON Schema pydantic gives `annotation` as a field type, or None when it is not a simple one.
    Every call returns new objects, so the caller owns the result."""
    try:
        leaf = _LEAF_SCHEMAS.get(annotation)
    except TypeError:  # an unhashable annotation is never a simple one
        return None
    if leaf is not None:
        return dict(leaf)
    if annotation is list:
        return {"items": {}, "type": "array"}
    origin = typing.get_origin(annotation)
    arguments = typing.get_args(annotation)
    if origin is typing.Literal:
        return _literal_schema(arguments)
    if origin in _SEQUENCES and len(arguments) == 1:
        items = annotation_schema(arguments[0])
        return None if items is None else {"items": items, "type": "array"}
    if origin is dict and len(arguments) == 2 and arguments[0] is str:
        values = annotation_schema(arguments[1])
        if values is None:
            return None
        return {"additionalProperties": values or True, "type": "object"}
    if origin in (typing.Union, types.UnionType) and len(arguments) == 2 and arguments[1] is type(None):
        inner = annotation_schema(arguments[0])
        if inner is None or "anyOf" in inner:
            return None
        return {"anyOf": [inner, {"type": "null"}]}
    return None


def _literal_schema(values: tuple[Any, ...]) -> dict[str, Any] | None:
    kinds = {type(value) for value in values}
    if kinds == {str}:
        json_type = "string"
    elif kinds == {int}:
        json_type = "integer"
    else:
        return None
    if len(values) == 1:
        return {"const": values[0], "type": json_type}
    return {"enum": list(values), "type": json_type}


def is_json_value(value: Any) -> bool:
    """A default pydantic writes into the schema unchanged: JSON scalars and lists/str-keyed dicts of them."""
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return True
    if kind is float:
        return math.isfinite(value)
    if kind is list:
        return all(is_json_value(item) for item in value)
    if kind is dict:
        return all(type(key) is str and is_json_value(item) for key, item in value.items())
    return False
