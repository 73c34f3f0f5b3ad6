"""Parameter schemas written directly (the fast path) are the ones pydantic itself produces, key for key."""

from __future__ import annotations

import collections.abc
import enum
import json
import typing
import uuid
from datetime import date, datetime, time, timedelta
from typing import Annotated, Any, Generic, Literal, Optional, TypeVar, Union

import pytest
from pydantic import BaseModel, ConfigDict, Field, RootModel, TypeAdapter

from bifrost.direct_schemas import annotation_schema, model_definitions
from bifrost.parameters import NO_ANNOTATION, NO_DEFAULT, ParameterSpec, build_parameters_schema, parameter_title

T = TypeVar("T")


class Colour(enum.Enum):
    RED = "red"
    GREEN = "green"


class Point(BaseModel):
    x: int
    y: int = 0


SharedPoint = Point
SharedColour = Colour


class Shape(BaseModel):
    """A shape: a model that refers to other types."""

    model_config = ConfigDict(title="A shape", json_schema_extra={"examples": [{"corners": []}]})

    corners: list[Point]
    colour: Colour = Colour.RED
    label: Annotated[str, Field(max_length=20)] = ""


class Tree(BaseModel):
    children: list[Tree] = []


class Tags(RootModel[list[str]]):
    pass


class Box(BaseModel, Generic[T]):
    content: T


def clashing_model() -> type[BaseModel]:
    class Point(BaseModel):  # a second class named Point: pydantic qualifies both names
        z: float

    class Clash(BaseModel):
        local: Point
        shared: SharedPoint

    return Clash


class WithStamp(BaseModel):
    stamp: date = Field(default_factory=date.today)


class Level(int, enum.Enum):
    LOW = 1
    HIGH = 2


class Ticket(BaseModel):
    """A ticket to file.

    Its body may be empty.
    """

    title: str
    body: str = ""
    colour: Colour = Colour.GREEN
    level: Level
    tags: list[str] = []
    due: date | None = None
    extra: dict[str, Any] = {}
    anything: Any = None


class Settings(BaseModel):
    enabled: bool = True
    ratio: float = 0.5
    mode: Literal["a", "b"] = "a"


class TicketWithColourTwice(Ticket):
    other: Colour


def clashing_enums() -> type[BaseModel]:
    class Colour(enum.Enum):  # a second enum named Colour: pydantic qualifies both names
        BLUE = "blue"

    class Clash(BaseModel):
        mine: Colour
        shared: SharedColour

    return Clash


class Described(BaseModel):
    name: str = Field(description="Described fields go through pydantic.")


class Aliased(BaseModel):
    name: str = Field(alias="Name")


class Nested(BaseModel):
    point: Point


class NullableColour(BaseModel):
    colour: Colour | None = None


class Forbidding(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str


class WithFactory(BaseModel):
    tags: list[str] = Field(default_factory=list)


# Models whose definitions are written directly, and models left to pydantic.
PLAIN_MODELS = [Point, Ticket, Settings, TicketWithColourTwice]
MORE_MODELS = [clashing_enums(), Described, Aliased, Nested, NullableColour, Forbidding, WithFactory]
OTHER_MODELS = [Shape, Tree, Tags, Box[int], WithStamp, *MORE_MODELS]


SIMPLE = [
    Any,
    str,
    int,
    float,
    bool,
    type(None),
    date,
    datetime,
    time,
    timedelta,
    uuid.UUID,
    list,
    dict,
    list[str],
    list[list[int]],
    list[Any],
    collections.abc.Sequence[float],
    dict[str, int],
    dict[str, Any],
    dict[str, list[date]],
    Literal["a"],
    Literal["a", "b", "c"],
    Literal[1, 2],
    int | None,
    Optional[date],  # noqa: UP045 - the typing spelling is what older code writes
    list[Literal["x", "y"]] | None,
    dict[str, str] | None,
]
# Handed to pydantic: the fast path must recognise them as not simple.
NOT_SIMPLE = [
    *PLAIN_MODELS,
    *MORE_MODELS,
    Colour,
    Point,
    list[Point],
    Point | None,
    int | str,
    Union[int, str, None],  # noqa: UP007 - a union of three, as older code writes it
    None | int,
    tuple[int, str],
    set[str],
    dict[int, str],
    Literal["a", 1],
    Literal[True],
    Annotated[int, Field(ge=1)],
    Annotated[str, Field(description="The author's own words.")],
    Point,
    Shape,
    Tree,
    Tags,
    Box[int],
    clashing_model(),
    WithStamp,
]
DEFAULTS = [NO_DEFAULT, None, "text", 3, 2.5, True, [], ["a", 1, None], {"key": [1, 2]}]


def pydantic_schema(name: str, annotation: Any, default: Any, description: str | None) -> dict[str, Any]:
    """The field's schema and $defs as pydantic writes them."""
    field: dict[str, Any] = {"title": parameter_title(name)}
    if description:
        field["description"] = description
    if default is not NO_DEFAULT:
        field["default"] = default
    if typing.get_origin(annotation) is Annotated:  # the author's own Field comes last, so it wins
        base, *metadata = typing.get_args(annotation)
        annotation, metadata = base, [Field(**field), *metadata]
    else:
        metadata = [Field(**field)]
    return TypeAdapter(Annotated[(annotation, *metadata)]).json_schema()


@pytest.mark.parametrize("annotation", SIMPLE, ids=repr)
def test_simple_annotations_are_written_directly(annotation: Any) -> None:
    assert annotation_schema(annotation) is not None


@pytest.mark.parametrize("annotation", NOT_SIMPLE, ids=repr)
def test_other_annotations_are_left_to_pydantic(annotation: Any) -> None:
    assert annotation_schema(annotation) is None


@pytest.mark.parametrize("annotation", SIMPLE + NOT_SIMPLE, ids=repr)
@pytest.mark.parametrize("default", DEFAULTS, ids=repr)
def test_property_schema_is_exactly_what_pydantic_produces(annotation: Any, default: Any) -> None:
    for description in (None, "What this parameter is for."):
        spec = ParameterSpec(name="some_value", annotation=annotation, default=default, description=description)
        built = build_parameters_schema([spec]).schema
        expected = pydantic_schema("some_value", annotation, default, description)
        assert json.dumps(built.pop("$defs", None)) == json.dumps(expected.pop("$defs", None))
        assert json.dumps(built["properties"]["some_value"]) == json.dumps(expected)


def test_unannotated_parameter_is_any_with_its_default() -> None:
    spec = ParameterSpec(name="limit", annotation=NO_ANNOTATION, default=5)
    assert build_parameters_schema([spec]).schema["properties"]["limit"] == {"default": 5, "title": "Limit"}


def test_each_schema_is_the_callers_own_copy() -> None:
    default: list[str] = ["a"]
    specs = [
        ParameterSpec(name="tags", annotation=list[str], default=default),
        ParameterSpec(name="colour", annotation=Colour, default=Colour.RED),
    ]
    first = build_parameters_schema(specs).schema
    first["properties"]["tags"]["default"].append("changed")
    first["properties"]["tags"]["items"]["type"] = "changed"
    first["properties"]["colour"]["title"] = "changed"
    first["$defs"]["Colour"]["enum"].append("changed")

    second = build_parameters_schema(specs).schema
    assert default == ["a"]
    assert second["properties"]["tags"] == {
        "default": ["a"],
        "items": {"type": "string"},
        "title": "Tags",
        "type": "array",
    }
    assert second["properties"]["colour"]["title"] == "Colour"
    assert second["$defs"]["Colour"]["enum"] == ["red", "green"]


@pytest.mark.parametrize("model", PLAIN_MODELS, ids=repr)
def test_plain_models_are_written_directly(model: type[BaseModel]) -> None:
    assert model_definitions(model) is not None


@pytest.mark.parametrize("model", OTHER_MODELS, ids=repr)
def test_other_models_are_left_to_pydantic(model: type[BaseModel]) -> None:
    assert model_definitions(model) is None


@pytest.mark.parametrize("model", PLAIN_MODELS, ids=repr)
def test_model_definitions_are_exactly_what_pydantic_produces(model: type[BaseModel]) -> None:
    expected = model.model_json_schema()
    definitions = expected.pop("$defs", {})
    definitions[model.__name__] = expected
    assert json.dumps(model_definitions(model)) == json.dumps(dict(sorted(definitions.items())))
