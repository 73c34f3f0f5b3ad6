from __future__ import annotations

import enum
import uuid
from datetime import date, datetime
from typing import Annotated, Any, Literal, Optional

import pytest
from pydantic import BaseModel, Field

from bifrost import ExecutionContext, workflow, workflow_info
from bifrost._internal.schema import ParameterValidationError, bind_arguments, validate_parameters
from bifrost.errors import ParameterWarning


class Priority(enum.Enum):
    """How urgent a ticket is."""

    LOW = "low"
    HIGH = "high"


class Address(BaseModel):
    street: str
    city: str
    postcode: str | None = None


class Person(BaseModel):
    """Someone to create."""

    name: str
    address: Address
    start: date


class Widget:
    """A class pydantic cannot describe."""


def properties(func: Any) -> dict[str, Any]:
    return dict(workflow_info(func).parameters_schema["properties"])


def fields(func: Any) -> dict[str, Any]:
    return {field.name: field for field in workflow_info(func).form_fields}


@workflow
def every_type(
    text: str,
    number: int,
    ratio: float,
    flag: bool,
    names: list[str],
    settings: dict[str, Any],
    site: Literal["north", "south"],
    priority: Priority,
    maybe: Optional[int],  # noqa: UP045 - the typing spelling must work too
    since: date | None,
    at: datetime,
    ident: uuid.UUID,
    person: Person,
    picks: list[Literal["a", "b"]],
) -> None: ...


def test_each_type_becomes_a_json_schema_property() -> None:
    props = properties(every_type)
    assert props["text"] == {"title": "Text", "type": "string"}
    assert props["number"]["type"] == "integer"
    assert props["ratio"]["type"] == "number"
    assert props["flag"]["type"] == "boolean"
    assert props["names"] == {"title": "Names", "type": "array", "items": {"type": "string"}}
    assert props["settings"]["type"] == "object"
    assert props["site"] == {"title": "Site", "type": "string", "enum": ["north", "south"]}
    assert props["priority"] == {"title": "Priority", "$ref": "#/$defs/Priority"}
    assert props["maybe"]["anyOf"] == [{"type": "integer"}, {"type": "null"}]
    assert props["since"]["anyOf"] == [{"type": "string", "format": "date"}, {"type": "null"}]
    assert props["at"]["format"] == "date-time"
    assert props["ident"]["format"] == "uuid"
    assert props["person"]["$ref"] == "#/$defs/Person"
    defs = workflow_info(every_type).parameters_schema["$defs"]
    assert defs["Priority"] == {
        "title": "Priority",
        "description": "How urgent a ticket is.",
        "type": "string",
        "enum": ["low", "high"],
    }
    assert defs["Person"]["properties"]["address"] == {"$ref": "#/$defs/Address"}, "nested models are kept"
    assert defs["Address"]["required"] == ["street", "city"]


def test_each_type_gets_a_form_field_hint() -> None:
    hints = fields(every_type)
    widgets = {name: hint.type for name, hint in hints.items()}
    assert widgets == {
        "text": "text",
        "number": "integer",
        "ratio": "number",
        "flag": "checkbox",
        "names": "list",
        "settings": "json",
        "site": "select",
        "priority": "select",
        "maybe": "integer",
        "since": "date",
        "at": "datetime",
        "ident": "text",
        "person": "json",
        "picks": "multiselect",
    }
    assert hints["site"].options == ["north", "south"]
    assert hints["priority"].options == ["low", "high"]
    assert hints["picks"].options == ["a", "b"]
    assert hints["since"].nullable and not hints["text"].nullable
    assert hints["text"].label == "Text" and hints["text"].required


def test_defaults_make_parameters_optional_and_show_in_the_form() -> None:
    @workflow
    def f(email: str, department: str = "IT", active: bool = True, since: date | None = None) -> None: ...

    schema = workflow_info(f).parameters_schema
    assert schema["required"] == ["email"]
    assert schema["properties"]["department"]["default"] == "IT"
    assert schema["properties"]["since"]["default"] is None
    hints = fields(f)
    assert (hints["department"].required, hints["department"].default) == (False, "IT")
    assert hints["active"].default is True


def test_descriptions_from_annotated_field_and_from_the_docstring() -> None:
    @workflow
    def f(
        email: Annotated[str, Field(description="Sign-in address.", max_length=100)],
        department_name: str = "IT",
        note: Annotated[str, Field(description="From Field.")] = "",
    ) -> None:
        """Do it.

        Args:
            email: Ignored, Field's description wins.
            department_name: The department,
                continued on a second line.
            note: Also ignored.
        """

    props = properties(f)
    assert props["email"]["description"] == "Sign-in address."
    assert props["email"]["maxLength"] == 100
    assert props["department_name"]["description"] == "The department, continued on a second line."
    assert props["department_name"]["title"] == "Department Name"
    assert props["note"]["description"] == "From Field."
    assert fields(f)["email"].description == "Sign-in address."


def test_unsupported_annotation_becomes_any_with_a_warning_not_a_crash() -> None:
    with pytest.warns(ParameterWarning) as caught:

        @workflow
        def f(thing: Widget, items: list[Widget], plain: Any, untyped) -> None:  # type: ignore[no-untyped-def]
            ...

    assert [str(warning.message) for warning in caught] == [
        "@workflow f: parameter 'thing': type Widget cannot be described as a form field; it accepts any value",
        f"@workflow f: parameter 'items': type {list[Widget]!r} cannot be described as a form field; it accepts "
        "any value",
    ]
    assert {warning.filename for warning in caught} == {__file__}, "the warning points at the workflow"

    info = workflow_info(f)
    assert info.parameters_schema["properties"]["thing"] == {"title": "Thing"}
    assert info.parameters_schema["properties"]["items"] == {"title": "Items"}
    assert info.parameters_schema["properties"]["untyped"] == {"title": "Untyped"}
    assert info.warnings == [
        "parameter 'thing': type Widget cannot be described as a form field; it accepts any value",
        f"parameter 'items': type {list[Widget]!r} cannot be described as a form field; it accepts any value",
    ]
    assert fields(f)["thing"].type == "json"


def test_an_unresolvable_string_annotation_is_reported_not_raised() -> None:
    with pytest.warns(ParameterWarning):

        @workflow(category="Forward references")
        def f(a: NotDefinedAnywhere, b: int) -> None:  # type: ignore[name-defined]  # noqa: F821
            ...

    info = workflow_info(f)
    assert info.parameters_schema["properties"]["b"]["type"] == "integer"
    assert info.warnings == [
        "parameter 'a': type NotDefinedAnywhere cannot be described as a form field; it accepts any value"
    ]


def test_parameter_named_like_pydantic_internals_works() -> None:
    @workflow
    def f(model_config: str, schema: int = 1) -> None: ...

    schema = workflow_info(f).parameters_schema
    assert validate_parameters(schema, {"model_config": "x"}) == {"model_config": "x", "schema": 1}


def test_validate_parameters_coerces_json_and_applies_defaults() -> None:
    @workflow
    def f(
        count: int,
        since: date,
        person: Person,
        priority: Priority = Priority.LOW,
        ident: uuid.UUID | None = None,
        tags: list[str] | None = None,
    ) -> None: ...

    schema = workflow_info(f).parameters_schema
    values = {
        "count": "7",
        "since": "2026-03-01",
        "person": {"name": "Ada", "address": {"street": "1 Main St", "city": "Oslo"}, "start": "2026-04-01"},
        "ident": "12345678-1234-5678-1234-567812345678",
    }
    assert validate_parameters(schema, values) == {
        "count": 7,
        "since": "2026-03-01",
        "person": {"name": "Ada", "address": {"street": "1 Main St", "city": "Oslo"}, "start": "2026-04-01"},
        "priority": "low",
        "ident": "12345678-1234-5678-1234-567812345678",
        "tags": None,
    }


def test_validate_parameters_reports_every_wrong_field() -> None:
    @workflow
    def f(email: str, count: int, site: Literal["north", "south"], person: Person, limit: int = 5) -> None: ...

    schema = workflow_info(f).parameters_schema
    with pytest.raises(ParameterValidationError) as caught:
        validate_parameters(
            schema,
            {"count": "many", "site": "west", "person": {"name": "Ada", "start": "x"}, "colour": "red"},
        )
    errors = {error.field: error for error in caught.value.errors}
    assert set(errors) == {"email", "count", "site", "person.address", "person.start", "colour"}
    assert errors["email"].type == "missing"
    assert errors["count"].type == "int_parsing"
    assert errors["colour"].message == "unknown parameter"
    assert "site: Input should be 'north' or 'south'" in str(caught.value)
    assert str(caught.value).startswith("invalid parameters: ")


def test_validate_parameters_enforces_field_constraints() -> None:
    @workflow
    def f(size: Annotated[int, Field(ge=1, le=10)], code: Annotated[str, Field(pattern=r"^[A-Z]{3}$")]) -> None: ...

    schema = workflow_info(f).parameters_schema
    assert validate_parameters(schema, {"size": 10, "code": "ABC"}) == {"size": 10, "code": "ABC"}
    with pytest.raises(ParameterValidationError) as caught:
        validate_parameters(schema, {"size": 11, "code": "abc"})
    assert [error.field for error in caught.value.errors] == ["size", "code"]


def test_validate_parameters_leaves_import_time_defaults_to_the_function() -> None:
    schema = {
        "type": "object",
        "properties": {"when": {"title": "When", "type": "string", "format": "date"}},
        "required": [],
        "additionalProperties": False,
    }
    assert validate_parameters(schema, {}) == {}
    assert validate_parameters(schema, {"when": "2026-01-02"}) == {"when": "2026-01-02"}


def test_validate_parameters_rejects_a_non_object() -> None:
    with pytest.raises(ParameterValidationError, match="parameters must be an object"):
        validate_parameters({"type": "object", "properties": {}}, ["a"])  # type: ignore[arg-type]


def test_bind_arguments_builds_real_python_values_and_injects_the_context(
    execution_context: ExecutionContext,
) -> None:
    @workflow
    def f(
        context: ExecutionContext,
        since: date,
        person: Person,
        priority: Priority,
        ident: uuid.UUID,
        thing: dict[str, Any] | None = None,
        limit: int = 5,
    ) -> None: ...

    arguments = bind_arguments(
        f,
        {
            "since": "2026-03-01",
            "person": {"name": "Ada", "address": {"street": "1 Main St", "city": "Oslo"}, "start": "2026-04-01"},
            "priority": "high",
            "ident": "12345678-1234-5678-1234-567812345678",
        },
        execution_context,
    )
    assert arguments["context"] is execution_context
    assert arguments["since"] == date(2026, 3, 1)
    assert arguments["person"] == Person(
        name="Ada", address=Address(street="1 Main St", city="Oslo"), start=date(2026, 4, 1)
    )
    assert arguments["priority"] is Priority.HIGH
    assert arguments["ident"] == uuid.UUID("12345678-1234-5678-1234-567812345678")
    assert (arguments["thing"], arguments["limit"]) == (None, 5)


def test_bind_arguments_injects_a_context_annotated_under_another_name(execution_context: ExecutionContext) -> None:
    @workflow
    def f(ctx: ExecutionContext, n: int) -> None: ...

    assert bind_arguments(f, {"n": "3"}, execution_context) == {"ctx": execution_context, "n": 3}


def test_bind_arguments_reports_wrong_and_unknown_values(execution_context: ExecutionContext) -> None:
    @workflow
    def f(n: int, when: date) -> None: ...

    with pytest.raises(ParameterValidationError) as caught:
        bind_arguments(f, {"n": "x", "extra": 1}, execution_context)
    assert {(error.field, error.type) for error in caught.value.errors} == {
        ("n", "int_parsing"),
        ("when", "missing"),
        ("extra", "unknown_parameter"),
    }


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        *[(given, given) for given in [{"n": 2, "ratio": 0.5, "name": "a", "flag": True, "raw": [1]}]],
        ({"n": 2}, {"n": 2, "ratio": 1.0, "name": "x", "flag": False, "raw": None}),
        # Values of another type than their parameter's are coerced: an int for a float becomes a float.
        ({"n": "2", "ratio": 3, "flag": "yes"}, {"n": 2, "ratio": 3.0, "name": "x", "flag": True, "raw": None}),
    ],
)
def test_bind_arguments_of_plain_parameters(
    values: dict[str, Any], expected: dict[str, Any], execution_context: ExecutionContext
) -> None:
    @workflow
    def f(n: int, ratio: float = 1.0, name: str = "x", flag: bool = False, raw=None) -> None: ...  # type: ignore[no-untyped-def]

    arguments = bind_arguments(f, values, execution_context)

    assert arguments == expected
    assert {name: type(value) for name, value in arguments.items()} == {
        name: type(value) for name, value in expected.items()
    }


@pytest.mark.parametrize(
    ("values", "errors"),
    [
        ({}, {("n", "missing")}),
        ({"n": 1, "extra": 1}, {("extra", "unknown_parameter")}),
        ({"n": "x"}, {("n", "int_parsing")}),
    ],
)
def test_bind_arguments_reports_plain_parameters_wrong(
    values: dict[str, Any], errors: set[tuple[str, str]], execution_context: ExecutionContext
) -> None:
    @workflow
    def f(n: int, name: str = "x") -> None: ...

    with pytest.raises(ParameterValidationError) as caught:
        bind_arguments(f, values, execution_context)
    assert {(error.field, error.type) for error in caught.value.errors} == errors


def test_bind_arguments_passes_unsupported_types_through_as_given(execution_context: ExecutionContext) -> None:
    def f(thing: Widget) -> None: ...

    assert bind_arguments(f, {"thing": {"any": "json"}}, execution_context) == {"thing": {"any": "json"}}


def test_two_different_types_with_one_name_are_a_definition_error() -> None:
    from bifrost import WorkflowDefinitionError

    def make(field_type: type) -> type[BaseModel]:
        class Item(BaseModel):
            value: field_type  # type: ignore[valid-type]

        return Item

    first, second = make(int), make(str)

    def f(a: Any, b: Any) -> None: ...

    f.__annotations__ = {"a": first, "b": second}

    with pytest.raises(WorkflowDefinitionError, match="parameters 'a' and 'b' use two different types named 'Item'"):
        workflow(f)
