"""Form-field hints: how a UI renders each parameter, derived from the parameter's JSON Schema alone.

Deriving them from the schema (not from Python types) lets the control plane rebuild them from a stored
schema, and keeps the decorator and static discovery in agreement by construction.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

Widget = Literal[
    "text", "number", "integer", "checkbox", "select", "multiselect", "date", "datetime", "time",
    "list", "json",
]

_FORMAT_WIDGETS: dict[str, Widget] = {"date": "date", "date-time": "datetime", "time": "time"}
_TYPE_WIDGETS: dict[str, Widget] = {
    "string": "text", "integer": "integer", "number": "number", "boolean": "checkbox", "array": "list",
    "object": "json",
}


class FormField(BaseModel):
    name: str
    label: str
    type: Widget
    required: bool
    default: Any = None
    options: list[Any] | None = None
    description: str | None = None
    nullable: bool = False


def form_fields(parameters_schema: dict[str, Any]) -> list[FormField]:
    return [FormField(**values) for values in form_field_values(parameters_schema)]


def form_field_values(parameters_schema: dict[str, Any]) -> list[dict[str, Any]]:
    """The form fields as JSON values, equal to `[f.model_dump(mode="json") for f in form_fields(schema)]`
    without building the models (discovery stores them for thousands of workflows)."""
    defs = parameters_schema.get("$defs", {})
    required = set(parameters_schema.get("required", []))
    fields = []
    for name, prop in parameters_schema.get("properties", {}).items():
        inner, nullable = _strip_null(_resolve(prop, defs))
        widget, options = _widget(inner, defs)
        fields.append(
            {
                "name": name,
                "label": prop.get("title", name),
                "type": widget,
                "required": name in required,
                "default": prop.get("default"),
                "options": options,
                "description": prop.get("description"),
                "nullable": nullable,
            }
        )
    return fields


def _resolve(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        return {**defs.get(ref.removeprefix("#/$defs/"), {}), **{k: v for k, v in schema.items() if k != "$ref"}}
    return schema


def _strip_null(schema: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    variants = schema.get("anyOf")
    if not isinstance(variants, list):
        return schema, False
    others = [v for v in variants if v.get("type") != "null"]
    nullable = len(others) < len(variants)
    if len(others) == 1:
        return others[0], nullable
    return {"anyOf": others}, nullable


def _widget(schema: dict[str, Any], defs: dict[str, Any]) -> tuple[Widget, list[Any] | None]:
    schema = _resolve(schema, defs)
    if "enum" in schema:
        return "select", list(schema["enum"])
    if "const" in schema:
        return "select", [schema["const"]]
    if schema.get("type") == "array":
        items = _resolve(schema.get("items", {}), defs)
        if "enum" in items:
            return "multiselect", list(items["enum"])
        return "list", None
    if schema.get("type") == "string" and schema.get("format") in _FORMAT_WIDGETS:
        return _FORMAT_WIDGETS[schema["format"]], None
    schema_type = schema.get("type")
    if isinstance(schema_type, str) and schema_type in _TYPE_WIDGETS:
        return _TYPE_WIDGETS[schema_type], None
    return "json", None
