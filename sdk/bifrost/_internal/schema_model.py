"""A pydantic model rebuilt from a parameters JSON Schema, for validating input where no user code exists.

The control plane stores each workflow's schema as JSON and never imports the workflow, so validation there
runs on a model derived from the schema: the JSON Schema keywords the parameter builder emits map back to
pydantic types and constraints.
"""

from __future__ import annotations

import datetime
import json
import uuid
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, create_model

_FORMATS: dict[str, Any] = {
    "date": datetime.date,
    "date-time": datetime.datetime,
    "time": datetime.time,
    "duration": datetime.timedelta,
    "uuid": uuid.UUID,
    "uuid1": uuid.UUID,
    "uuid3": uuid.UUID,
    "uuid4": uuid.UUID,
    "uuid5": uuid.UUID,
}
_CONSTRAINTS = {
    "minimum": "ge",
    "maximum": "le",
    "exclusiveMinimum": "gt",
    "exclusiveMaximum": "lt",
    "multipleOf": "multiple_of",
    "minLength": "min_length",
    "maxLength": "max_length",
    "minItems": "min_length",
    "maxItems": "max_length",
    "pattern": "pattern",
}


def field_key(index: int) -> str:
    """Internal attribute name of the index-th parameter; the parameter's own name is its alias, so names
    that clash with pydantic's (`model_config`, `_private`, ...) still work."""
    return f"p{index}"


_MODEL_CACHE_SIZE = 1024
_models: dict[str, type[BaseModel]] = {}


def model_for_schema(schema: dict[str, Any]) -> type[BaseModel]:
    """The validating model of a parameters schema (cached per schema)."""
    key = json.dumps(schema, sort_keys=True)
    model = _models.get(key)
    if model is None:
        if len(_models) >= _MODEL_CACHE_SIZE:
            _models.clear()
        model = _models[key] = _ModelBuilder(schema.get("$defs", {})).object_model("Parameters", schema, "forbid")
    return model


class _ModelBuilder:
    def __init__(self, defs: dict[str, Any]) -> None:
        self._defs = defs
        self._built: dict[str, Any] = {}

    def object_model(self, title: str, schema: dict[str, Any], extra: Literal["forbid", "ignore"]) -> type[BaseModel]:
        required = set(schema.get("required", []))
        fields: dict[str, Any] = {}
        for index, (name, prop) in enumerate(schema.get("properties", {}).items()):
            annotation = self.python_type(prop)
            if name in required:
                fields[field_key(index)] = (annotation, Field(alias=name))
            else:
                fields[field_key(index)] = (annotation, Field(default=prop.get("default"), alias=name))
        config = ConfigDict(extra=extra)
        model: type[BaseModel] = create_model(title, __config__=config, **fields)
        return model

    def python_type(self, schema: dict[str, Any]) -> Any:
        if "$ref" in schema:
            return self._reference(str(schema["$ref"]))
        if "const" in schema:
            return Literal[schema["const"]]
        if "enum" in schema:
            return Literal[tuple(schema["enum"])]
        for keyword in ("anyOf", "oneOf"):
            if keyword in schema:
                variants = tuple(self.python_type(variant) for variant in schema[keyword])
                return Union[variants]  # noqa: UP007 - a runtime-built union needs the subscript form
        if "allOf" in schema and len(schema["allOf"]) == 1:
            return self.python_type(schema["allOf"][0])
        schema_type = schema.get("type")
        if isinstance(schema_type, list):
            return Union[tuple(self.python_type({**schema, "type": t}) for t in schema_type)]  # noqa: UP007
        return self._constrained(self._base_type(schema_type, schema), schema)

    def _base_type(self, schema_type: Any, schema: dict[str, Any]) -> Any:
        if schema_type == "string":
            return _FORMATS.get(schema.get("format", ""), str)
        if schema_type == "integer":
            return int
        if schema_type == "number":
            return float
        if schema_type == "boolean":
            return bool
        if schema_type == "null":
            return type(None)
        if schema_type == "array":
            if "prefixItems" in schema:
                return tuple[tuple(self.python_type(item) for item in schema["prefixItems"])]  # type: ignore[misc]
            return list[self.python_type(schema.get("items", {}))]  # type: ignore[misc]
        if schema_type == "object":
            if "properties" in schema:
                return self.object_model(schema.get("title", "Object"), schema, extra="ignore")
            values = schema.get("additionalProperties", {})
            return dict[str, self.python_type(values if isinstance(values, dict) else {})]  # type: ignore[misc]
        return Any

    def _constrained(self, base: Any, schema: dict[str, Any]) -> Any:
        constraints = {_CONSTRAINTS[key]: value for key, value in schema.items() if key in _CONSTRAINTS}
        if not constraints:
            return base
        return Annotated[base, Field(**constraints)]

    def _reference(self, ref: str) -> Any:
        name = ref.removeprefix("#/$defs/")
        if name not in self._built:
            definition = self._defs.get(name)
            if definition is None:
                raise ValueError(f"parameters schema refers to {ref!r}, which it does not define")
            self._built[name] = Any  # a type that refers to itself accepts anything below its first level
            self._built[name] = self.python_type(definition)
        return self._built[name]
