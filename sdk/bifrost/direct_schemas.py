"""JSON Schemas of the simple annotations written out directly, exactly as pydantic would produce them.

Most workflow parameters are plain (`str`, `int | None`, `list[str]`, `Literal["a", "b"]`, `date`) and most
defaults are JSON literals; building a `TypeAdapter` for each of them is what made schema building slow. The
schemas here follow pydantic's output key for key (keys sorted, as pydantic sorts them); anything else — models,
enums, constrained `Annotated` types, unions of several types, tuples, sets — returns None and goes through
pydantic. Plain models (fields of those simple types or of enums, JSON defaults, no configuration) get their
definitions written the same way: building a model's core schema costs milliseconds, and a workspace defines
many of them. `tests/sdk/test_direct_schemas.py` holds both paths equal.
"""

from __future__ import annotations

import collections.abc
import datetime
import enum
import functools
import inspect
import math
import types
import typing
import uuid
from typing import Any

from pydantic import BaseModel, TypeAdapter

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
_PLAIN_FIELD_ATTRIBUTES = frozenset({"annotation", "default"})


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


def model_definitions(model: type[BaseModel]) -> dict[str, Any] | None:
    """The `$defs` pydantic gives a field of type `model` (the model's schema under its class name, and the enums
    it refers to), for a plain model; None for any other (the caller asks pydantic). The caller owns the result.
    """
    if model.model_config.keys() - {"defer_build"} or model.__pydantic_root_model__ or "__deprecated__" in vars(model):
        return None
    if model.__pydantic_generic_metadata__["origin"] is not None or not model.__pydantic_fields_complete__:
        return None
    name = model.__name__
    definitions: dict[str, Any] = {}
    enums: dict[str, type[enum.Enum]] = {}
    properties: dict[str, Any] = {}
    required: list[str] = []
    for field_name, field in model.model_fields.items():
        if field.metadata or field._attributes_set.keys() - _PLAIN_FIELD_ATTRIBUTES:
            return None
        annotation = field.annotation
        has_default = not field.is_required()
        if has_default and field.default_factory is not None:
            return None
        if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
            definition = _enum_definition(annotation)
            enum_name = annotation.__name__
            if definition is None or enum_name == name or enums.setdefault(enum_name, annotation) is not annotation:
                return None  # two types of one name: pydantic qualifies their names
            definitions[enum_name] = definition
            schema: dict[str, Any] = {"$ref": f"#/$defs/{enum_name}"}
            if has_default:
                if not isinstance(field.default, annotation) or not is_json_value(field.default.value):
                    return None
                schema["default"] = field.default.value
        else:
            type_schema = annotation_schema(annotation)
            if type_schema is None or (has_default and not is_json_value(field.default)):
                return None
            schema = {**type_schema, "title": _field_title(field_name)}
            if has_default:
                schema["default"] = field.default
            schema = dict(sorted(schema.items()))
        properties[field_name] = schema
        if not has_default:
            required.append(field_name)
    model_schema: dict[str, Any] = {"properties": properties}
    if required:
        model_schema["required"] = required
    model_schema["title"] = name
    model_schema["type"] = "object"
    if model.__doc__:
        model_schema = {"description": inspect.cleandoc(model.__doc__), **model_schema}
    definitions[name] = model_schema
    copied: dict[str, Any] = json_copy(dict(sorted(definitions.items())))
    return copied


def _field_title(name: str) -> str:
    """The title pydantic gives a model's field (`GenerateJsonSchema.get_title_from_name`)."""
    return name.title().replace("_", " ").strip()


@functools.lru_cache(maxsize=1024)
def _enum_definition(enum_type: type[enum.Enum]) -> dict[str, Any] | None:
    """The definition of an enum as pydantic writes it, computed once per enum (files that repeat an enum share
    one class for it); None when it is not a plain one."""
    if not enum_type.__name__.isidentifier() or "__" in enum_type.__name__:
        return None
    try:
        schema = TypeAdapter(enum_type).json_schema()
    except Exception:  # an enum pydantic cannot describe goes the general way, which reports it
        return None
    if "$defs" in schema or "$ref" in schema or schema.get("title") != enum_type.__name__:
        return None
    return schema


def json_copy(value: Any) -> Any:
    """A deep copy of a JSON value (dicts, lists, scalars)."""
    if type(value) is dict:
        return {key: json_copy(item) for key, item in value.items()}
    if type(value) is list:
        return [json_copy(item) for item in value]
    return value
