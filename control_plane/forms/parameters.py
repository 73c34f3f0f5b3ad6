"""A workflow parameter as a form sees it, read from the workflow's parameters schema (JSON Schema)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bifrost._internal.schema import ParameterValidationError, validate_parameters

SCALARS = ("string", "integer", "number", "boolean")


@dataclass(frozen=True)
class Parameter:
    name: str
    schema: dict[str, Any]
    """The parameter's own schema, as the workflow declares it."""
    inner: dict[str, Any]
    """Its schema with references resolved and `null` taken out of a union with one other type."""
    defs: dict[str, Any]
    required: bool
    """The workflow has no default for it."""
    json_type: str | None
    """`string`, `integer`, `number`, `boolean`, `array` or `object`; None when any value (or several types) fit."""
    format: str | None
    enum: list[Any] | None
    item_type: str | None
    """For an array: the type of its items, when they are of one scalar type."""
    item_enum: list[Any] | None

    @property
    def title(self) -> str:
        return str(self.schema.get("title") or self.name)

    @property
    def description(self) -> str | None:
        description = self.schema.get("description")
        return description if isinstance(description, str) else None

    @property
    def has_default(self) -> bool:
        return "default" in self.schema

    @property
    def choices(self) -> list[Any] | None:
        """The values the workflow accepts for it (or for each item of a list), when it lists them."""
        return self.item_enum if self.json_type == "array" else self.enum

    def problem_with(self, value: Any) -> str | None:
        """Why the workflow refuses `value` for this parameter; None when it takes it."""
        schema = {"type": "object", "properties": {self.name: self.schema}, "$defs": self.defs}
        try:
            validate_parameters(schema, {self.name: value})
        except ParameterValidationError as exc:
            return "; ".join(error.message for error in exc.errors)
        return None


def parameters_of(parameters_schema: dict[str, Any]) -> dict[str, Parameter]:
    defs = parameters_schema.get("$defs", {})
    required = set(parameters_schema.get("required", []))
    found = {}
    for name, schema in parameters_schema.get("properties", {}).items():
        inner = _without_null(_resolved(schema, defs), defs)
        json_type = inner.get("type") if isinstance(inner.get("type"), str) else None
        items = _resolved(inner.get("items", {}), defs) if json_type == "array" else {}
        item_type = items.get("type") if items.get("type") in SCALARS else None
        found[name] = Parameter(
            name=name,
            schema=schema,
            inner=inner,
            defs=defs,
            required=name in required,
            json_type=json_type,
            format=inner.get("format") if json_type == "string" else None,
            enum=_listed(inner),
            item_type=item_type,
            item_enum=_listed(items) if item_type else None,
        )
    return found


def _resolved(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        rest = {key: value for key, value in schema.items() if key != "$ref"}
        return {**defs.get(ref.removeprefix("#/$defs/"), {}), **rest}
    return schema


def _without_null(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    variants = schema.get("anyOf")
    if not isinstance(variants, list):
        return schema
    others = [variant for variant in variants if variant.get("type") != "null"]
    if len(others) != 1:
        return schema
    rest = {key: value for key, value in schema.items() if key != "anyOf"}
    return {**_resolved(others[0], defs), **rest}


def _listed(schema: dict[str, Any]) -> list[Any] | None:
    if "enum" in schema:
        return list(schema["enum"])
    if "const" in schema:
        return [schema["const"]]
    return None
