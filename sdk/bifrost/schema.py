"""Parameter validation on both sides of an execution.

- `validate_parameters` runs in the control plane: JSON input against a stored parameters schema (no user
  code there), defaults applied, JSON-compatible values out.
- `bind_arguments` runs in the runner: JSON values coerced with the function's real annotations (a `date`
  from its ISO string, a pydantic model from a dict, an Enum from its value), the context injected.

Both raise `ParameterValidationError`, which lists every wrong field.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PydanticUserError, TypeAdapter, ValidationError, create_model
from pydantic.errors import PydanticSchemaGenerationError

from bifrost.context import ExecutionContext
from bifrost.parameters import NO_ANNOTATION, NO_DEFAULT, ParameterSpec, build_parameters_schema
from bifrost.schema_model import field_key, model_for_schema
from bifrost.signatures import parameter_specs

__all__ = [
    "FieldError",
    "ParameterSpec",
    "ParameterValidationError",
    "bind_arguments",
    "build_parameters_schema",
    "validate_parameters",
]


class FieldError(BaseModel):
    field: str = Field(description="Dotted path of the wrong value: `email`, `address.city`, `items.2`.")
    message: str
    type: str = Field(description="Machine-readable error kind, e.g. `missing`, `int_parsing`, `unknown_parameter`.")


class ParameterValidationError(ValueError):
    def __init__(self, errors: list[FieldError]) -> None:
        self.errors = errors
        details = "; ".join(f"{error.field}: {error.message}" for error in errors)
        super().__init__(f"invalid parameters: {details}")


def validate_parameters(parameters_schema: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """Validate and coerce JSON input against a parameters schema; defaults are filled in."""
    if not isinstance(values, dict):
        raise ParameterValidationError([FieldError(field="", message="parameters must be an object", type="type")])
    try:
        model = model_for_schema(parameters_schema)
    except (ValueError, TypeError, PydanticUserError) as exc:
        raise ValueError(f"the stored parameters schema is not usable: {exc}") from exc
    try:
        validated = model.model_validate(values)
    except ValidationError as exc:
        raise ParameterValidationError(_field_errors(exc)) from None
    coerced = validated.model_dump(mode="json", by_alias=True, exclude_unset=True)
    result: dict[str, Any] = {}
    for name, prop in parameters_schema.get("properties", {}).items():
        if name in coerced:
            result[name] = coerced[name]
        elif "default" in prop:
            result[name] = prop["default"]
    return result


def bind_arguments(func: Callable[..., Any], values: dict[str, Any], ctx: ExecutionContext) -> dict[str, Any]:
    """The keyword arguments to call `func` with: `values` coerced to its annotations, plus its context."""
    binding = _binding_for(func)
    try:
        validated = binding.model.model_validate(values)
    except ValidationError as exc:
        raise ParameterValidationError(_field_errors(exc)) from None
    arguments = {name: getattr(validated, field_key(index)) for index, name in enumerate(binding.names)}
    for name in binding.context_names:
        arguments[name] = ctx
    return arguments


@dataclass(frozen=True)
class _Binding:
    model: type[BaseModel]
    names: list[str]
    context_names: list[str]


@functools.lru_cache(maxsize=256)
def _binding_for(func: Callable[..., Any]) -> _Binding:
    fields: dict[str, Any] = {}
    names: list[str] = []
    context_names: list[str] = []
    for spec in parameter_specs(func):
        if spec.is_context:
            context_names.append(spec.name)
            continue
        annotation = _validating_annotation(spec)
        default = ... if spec.default is NO_DEFAULT else spec.default
        fields[field_key(len(names))] = (annotation, Field(default=default, alias=spec.name))
        names.append(spec.name)
    model: type[BaseModel] = create_model(
        f"{func.__name__}_arguments", __config__=ConfigDict(extra="forbid"), **fields
    )
    return _Binding(model, names, context_names)


def _validating_annotation(spec: ParameterSpec) -> Any:
    """The real annotation when pydantic can validate it, else Any (the value is passed through as given)."""
    if spec.annotation is NO_ANNOTATION or spec.unsupported is not None:
        return Any
    try:
        TypeAdapter(spec.annotation)
    except (PydanticSchemaGenerationError, PydanticUserError, TypeError):
        return Any
    return spec.annotation


def _field_errors(exc: ValidationError) -> list[FieldError]:
    errors = []
    for error in exc.errors():
        path = ".".join(str(part) for part in error["loc"])
        if error["type"] == "extra_forbidden":
            errors.append(FieldError(field=path, message="unknown parameter", type="unknown_parameter"))
        else:
            errors.append(FieldError(field=path, message=error["msg"], type=error["type"]))
    return errors

