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

from bifrost._internal.schema_model import field_key, model_for_schema
from bifrost.context import ExecutionContext
from bifrost.parameters import NO_ANNOTATION, NO_DEFAULT, ParameterSpec, build_parameters_schema
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
    signature = _signature_of(func)
    arguments = _as_given(signature.specs, values)
    if arguments is None:
        arguments = _coerced(func, values)
    for name in signature.context_names:
        arguments[name] = ctx
    return arguments


@dataclass(frozen=True)
class _Signature:
    specs: list[ParameterSpec]
    """The parameters that take values; the context parameters are in `context_names`."""
    context_names: list[str]


@functools.lru_cache(maxsize=256)
def _signature_of(func: Callable[..., Any]) -> _Signature:
    specs = parameter_specs(func)
    return _Signature(
        specs=[spec for spec in specs if not spec.is_context],
        context_names=[spec.name for spec in specs if spec.is_context],
    )


_PLAIN_TYPES = (str, int, float, bool)


def _as_given(specs: list[ParameterSpec], values: dict[str, Any]) -> dict[str, Any] | None:
    """The arguments without a validation model, when they need none: every value already of its parameter's
    plain type (or unannotated), nothing unknown, nothing missing. Building the model costs a fresh runner a
    millisecond; validating such values with it would hand them back unchanged. None when the model is needed."""
    arguments: dict[str, Any] = {}
    for spec in specs:
        if spec.name in values:
            value = values[spec.name]
            plain = spec.annotation in _PLAIN_TYPES and type(value) is spec.annotation
            if not (plain or spec.annotation is NO_ANNOTATION):
                return None
            arguments[spec.name] = value
        elif spec.default is NO_DEFAULT:
            return None
        else:
            arguments[spec.name] = spec.default
    return arguments if values.keys() <= arguments.keys() else None


def _coerced(func: Callable[..., Any], values: dict[str, Any]) -> dict[str, Any]:
    try:
        validated = _model_for(func).model_validate(values)
    except ValidationError as exc:
        raise ParameterValidationError(_field_errors(exc)) from None
    return {spec.name: getattr(validated, field_key(index)) for index, spec in enumerate(_signature_of(func).specs)}


@functools.lru_cache(maxsize=256)
def _model_for(func: Callable[..., Any]) -> type[BaseModel]:
    fields: dict[str, Any] = {}
    for index, spec in enumerate(_signature_of(func).specs):
        annotation = _validating_annotation(spec)
        default = ... if spec.default is NO_DEFAULT else spec.default
        fields[field_key(index)] = (annotation, Field(default=default, alias=spec.name))
    model: type[BaseModel] = create_model(
        f"{func.__name__}_arguments", __config__=ConfigDict(extra="forbid"), **fields
    )
    return model


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

