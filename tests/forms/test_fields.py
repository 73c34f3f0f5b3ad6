"""A form's fields against a workflow's parameters, without a server: the widget each parameter gets, which
widgets fit which types, and what a markdown field may carry."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

import pytest

from bifrost import data_provider, workflow
from bifrost.decorators import data_provider_info, workflow_info
from control_plane.forms.definition import FieldSpec
from control_plane.forms.fields import default_fields, resolve
from control_plane.registry import RegistrySnapshot


@workflow
def everything(
    text: str,
    day: date,
    moment: datetime,
    size: Literal["s", "m", "l"],
    flag: bool,
    count: int,
    ratio: float,
    sizes: list[Literal["s", "m"]],
    names: list[str],
    blob: dict[str, Any],
    anything=None,
    maybe: str | None = None,
) -> None:
    """Every kind of parameter."""


@data_provider
def teams(prefix: str) -> list[dict[str, str]]:
    return []


SNAPSHOT = RegistrySnapshot(
    workflows={"everything": workflow_info(everything)}, data_providers={"teams": data_provider_info(teams)}
)


def problems(*fields: dict[str, Any]) -> dict[tuple[str, ...], str]:
    specs = [*(FieldSpec.model_validate(field) for field in fields)]
    named = {spec.name for spec in specs}
    specs += [spec for spec in default_fields(SNAPSHOT.workflows["everything"]) if spec.name not in named]
    return {problem.loc: problem.message for problem in resolve("everything", specs, SNAPSHOT).problems}


def test_each_parameter_gets_a_widget_that_fits_its_type() -> None:
    form = resolve("everything", default_fields(SNAPSHOT.workflows["everything"]), SNAPSHOT)
    assert form.problems == []
    assert {field.name: field.widget.value for field in form.fields} == {
        "text": "text", "day": "date", "moment": "datetime", "size": "select", "flag": "checkbox", "count": "number",
        "ratio": "number", "sizes": "multiselect", "names": "json", "blob": "json", "anything": "json",
        "maybe": "text",
    }
    size = form.get("size")
    assert size is not None and [option.value for option in size.choices or []] == ["s", "m", "l"]
    assert [field.name for field in form.fields if field.required] == [
        "text", "day", "moment", "size", "flag", "count", "ratio", "sizes", "names", "blob",
    ]


@pytest.mark.parametrize(
    ("field", "message"),
    [
        ({"name": "count", "widget": "email"}, "widget 'email' does not fit parameter 'count', which takes an integer"),
        ({"name": "size", "widget": "text"}, "which takes one of 's', 'm', 'l' (fitting widgets: select, radio)"),
        ({"name": "day", "widget": "textarea"}, "which takes a string (date) (fitting widgets: date, text, select"),
        ({"name": "names", "widget": "multiselect"}, "needs its choices"),
        ({"name": "blob", "widget": "select"}, "which takes an object (fitting widgets: json)"),
        ({"name": "flag", "placeholder": "yes?"}, "a checkbox field shows no placeholder"),
        ({"name": "text", "validation": {"minimum": 1}}, "minimum and maximum bound a number field"),
        ({"name": "count", "validation": {"minimum": 5, "maximum": 1}}, "minimum 5.0 is above maximum 1.0"),
        ({"name": "text", "content": "# no"}, "only a markdown field has content"),
        ({"name": "text", "widget": "text", "options": [{"value": "a", "label": "A"}]}, "a text field has no choices"),
        ({"name": "text", "options": [{"value": 1, "label": "one"}]}, "option value 1 does not fit parameter"),
        (
            {"name": "text", "widget": "select", "options": [{"value": "a", "label": label} for label in "AB"]},
            "option value 'a' is listed twice",
        ),
        (
            {"name": "count", "widget": "select", "options": [{"value": "many", "label": "Many"}]},
            "option value 'many' does not fit parameter",
        ),
        (
            {"name": "text", "data_provider": {"name": "teams", "inputs": {"prefix": {"value": 5}}}},
            "input 'prefix' of 'teams': Input should be a valid string",
        ),
        ({"name": "text", "widget": "select", "data_provider": {"name": "teams"}}, "needs input 'prefix'"),
        ({"name": "text", "default": 5}, "default 5 does not fit parameter 'text'"),
        ({"name": "maybe", "visible_if": {"var": "text"}}, "reads field 'text', which is not a field above"),
    ],
)
def test_a_field_that_does_not_fit_says_why(field: dict[str, Any], message: str) -> None:
    found = problems(field)
    assert any(message in text for where, text in found.items() if where[:2] == ("fields", field["name"])), found


def test_markdown_fills_no_parameter_and_takes_only_its_text() -> None:
    found = problems(
        {"name": "intro", "widget": "markdown", "content": "Hello", "label": "Read me"},
        {"name": "text", "widget": "markdown", "content": "x"},
        {"name": "empty", "widget": "markdown", "required": True, "default": "x"},
    )
    assert found == {
        ("fields", "text", "name"): "'text' is a parameter of workflow 'everything'; a markdown field fills none",
        ("fields", "empty", "content"): "a markdown field needs its content (Markdown text)",
        ("fields", "empty", "default"): "a markdown field takes no default",
        ("fields", "empty", "required"): "a markdown field takes no required",
        ("fields",): "parameter 'text' is required by workflow 'everything' and has no field",
    }


def test_a_condition_may_read_only_the_shown_fields_above() -> None:
    assert problems(
        {"name": "intro", "widget": "markdown", "content": "Hello"},
        {"name": "maybe", "visible_if": {"var": "intro"}},
    ) == {
        ("fields", "maybe", "visible_if"): "reads field 'intro', which is not a field above this one (those are: none)"
    }
    assert problems({"name": "flag"}, {"name": "maybe", "visible_if": {"var": "flag"}}) == {}
