"""What a submission of a form gives the workflow: the values of the fields shown, checked by the fields' rules.

Fields are taken in order. A field whose `visible_if` is false for the values of the (shown) fields above it is
hidden: a value sent for it is dropped. A field shown but left empty (no value, null, "" or an empty list) is an
error when it is required, and otherwise gives its default, if it has one of its own; a field with no value
leaves the workflow's default. The parameters' types are the workflow's to check, after these rules."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from control_plane.errors import FieldProblem
from control_plane.forms import json_logic
from control_plane.forms.definition import FieldInput
from control_plane.forms.fields import ResolvedField, ResolvedForm


@dataclass
class Submission:
    parameters: dict[str, Any] = field(default_factory=dict)
    problems: list[FieldProblem] = field(default_factory=list)
    shown: list[ResolvedField] = field(default_factory=list)


def is_empty(value: Any) -> bool:
    return value is None or value == "" or value == []


def submission(form: ResolvedForm, values: dict[str, Any]) -> Submission:
    result = Submission()
    names = {resolved.name: resolved for resolved in form.fields}
    for name, value in values.items():
        resolved = names.get(name)
        if resolved is None:
            result.problems.append(FieldProblem(("values", name), "not a field of this form", "unknown_field"))
        elif resolved.is_markdown and value is not None:
            result.problems.append(FieldProblem(("values", name), "a text of the form takes no value", "read_only"))
    seen: dict[str, Any] = {}
    for resolved in form.fields:
        if resolved.spec.visible_if is not None and not json_logic.truthy(
            json_logic.evaluate(resolved.spec.visible_if, seen)
        ):
            if resolved.spec.has_default:
                result.parameters[resolved.name] = resolved.spec.default
            continue
        result.shown.append(resolved)
        if resolved.is_markdown:
            continue
        if resolved.name in values:
            seen[resolved.name] = values[resolved.name]
        value = values.get(resolved.name)
        if is_empty(value):
            if resolved.required:
                result.problems.append(FieldProblem(("values", resolved.name), "a value is required", "missing"))
            elif resolved.spec.has_default:
                result.parameters[resolved.name] = resolved.spec.default
            continue
        for problem in resolved.value_problems(value):
            result.problems.append(FieldProblem(("values", resolved.name), problem, "value_error"))
        result.parameters[resolved.name] = value
    return result


def provider_inputs(resolved: ResolvedField, values: dict[str, Any]) -> dict[str, Any]:
    """The inputs of the field's data provider: fixed ones, and the values of the fields it reads that have one."""
    binding = resolved.spec.data_provider
    inputs: dict[str, Any] = {}
    for name, given in (binding.inputs if binding else {}).items():
        if isinstance(given, FieldInput):
            if not is_empty(values.get(given.field)):
                inputs[name] = values[given.field]
        else:
            inputs[name] = given.value
    return inputs
