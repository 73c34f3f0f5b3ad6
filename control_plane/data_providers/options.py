"""The options of a choice: what a data provider must return, and what a form field may list itself."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr, TypeAdapter
from pydantic import ValidationError as PydanticValidationError

OptionValue = StrictStr | StrictInt | StrictFloat | StrictBool
SHAPE = '{"value": ..., "label": "...", "description": "..." (optional)}'
_SHOWN_PROBLEMS = 3


class Option(BaseModel):
    """One choice: the value the workflow receives, and what the person choosing sees."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    value: OptionValue = Field(description="A string, number or boolean.")
    label: Annotated[StrictStr, Field(max_length=1000)]
    description: Annotated[StrictStr, Field(max_length=10_000)] | None = None


_OPTIONS: TypeAdapter[list[Option]] = TypeAdapter(list[Option])


class NotOptionsError(ValueError):
    """A value that is not a list of options; the message says what is wrong with it."""


def options_of(value: Any) -> list[Option]:
    """`value` (a provider's JSON result) as options; `NotOptionsError` saying what is wrong otherwise."""
    if not isinstance(value, list):
        kind = "nothing" if value is None else f"a {type(value).__name__}"
        raise NotOptionsError(f"{kind} instead of a list of options, each {SHAPE}")
    try:
        return _OPTIONS.validate_python(value)
    except PydanticValidationError as exc:
        problems = list(dict.fromkeys(_problem(error, value) for error in exc.errors()))
        shown = "; ".join(problems[:_SHOWN_PROBLEMS])
        more = len(problems) - _SHOWN_PROBLEMS
        listed = shown + (f"; and {more} more" if more > 0 else "")
        raise NotOptionsError(f"a list that is not one of options, each {SHAPE}: {listed}") from None


_EXPECTED = {"value": "a string, number or boolean", "label": "a string", "description": "a string or null"}


def _problem(error: Any, items: list[Any]) -> str:
    index, *rest = error["loc"]
    if not rest:
        return f"item {index} is not an object but {type(items[index]).__name__} {items[index]!r:.50}"
    key = str(rest[0])
    if error["type"] == "extra_forbidden":
        return f"item {index} has {key!r}, which is not an option key"
    if error["type"] == "missing":
        return f"item {index} has no {key!r}"
    if key == "value":  # one error per type of the union: the expectation says it once
        return f"item {index}: 'value' must be {_EXPECTED['value']}"
    return f"item {index}: {key!r} must be {_EXPECTED.get(key, 'valid')} ({error['msg']})"
