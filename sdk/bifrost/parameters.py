"""The one parameter-schema builder: (name, annotation, default, description) in, JSON Schema out.

Two front-ends feed it: `bifrost.signatures` (the live function, at decoration time) and `bifrost._internal.discovery`
(annotations rebuilt from the source text, without importing it). Both hand over the same `ParameterSpec`s for
the same function, so both produce the same schema.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import typing
import warnings
from dataclasses import dataclass, field
from typing import Annotated, Any, NamedTuple

from pydantic import BaseModel, Field, PydanticUserError, TypeAdapter
from pydantic.errors import PydanticSchemaGenerationError
from pydantic.fields import FieldInfo
from pydantic.json_schema import PydanticJsonSchemaWarning

from bifrost.context import ExecutionContext
from bifrost.direct_schemas import annotation_schema, is_json_value, json_copy, model_definitions
from bifrost.errors import WorkflowDefinitionError


class _UnknownDefault:
    """A default exists, but its value is only known once the module is imported (a call, a variable)."""

    def __repr__(self) -> str:
        return "<default known at import>"


NO_DEFAULT: Any = inspect.Parameter.empty
NO_ANNOTATION: Any = inspect.Parameter.empty
UNKNOWN_DEFAULT: Any = _UnknownDefault()
CONTEXT_PARAMETER_NAME = "context"


@dataclass(frozen=True)
class ParameterSpec:
    name: str
    annotation: Any = NO_ANNOTATION
    default: Any = NO_DEFAULT
    description: str | None = None
    unsupported: str | None = None
    """Set by a front-end that could not rebuild the annotation; the text of that annotation."""

    @property
    def is_context(self) -> bool:
        return self.name == CONTEXT_PARAMETER_NAME or self.annotation is ExecutionContext


@dataclass(frozen=True)
class ParametersSchema:
    schema: dict[str, Any]
    warnings: list[str] = field(default_factory=list)


def build_parameters_schema(params: list[ParameterSpec]) -> ParametersSchema:
    """The JSON Schema (an object) of a function's form parameters; the context parameter is left out."""
    properties: dict[str, Any] = {}
    required: list[str] = []
    defs: dict[str, Any] = {}
    owners: dict[str, str] = {}
    found_warnings: list[str] = []
    for param in params:
        if param.is_context:
            continue
        piece = _property_schema(param)
        properties[param.name] = piece.schema
        if param.default is NO_DEFAULT:
            required.append(param.name)
        if piece.warning:
            found_warnings.append(piece.warning)
        for def_name, definition in piece.defs.items():
            if def_name in defs and json.dumps(defs[def_name]) != json.dumps(definition):
                raise WorkflowDefinitionError(
                    f"parameters '{owners[def_name]}' and '{param.name}' use two different types named "
                    f"'{def_name}'; rename one of them"
                )
            defs[def_name] = definition
            owners.setdefault(def_name, param.name)
    schema: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }
    if defs:
        schema["$defs"] = defs
    return ParametersSchema(schema=schema, warnings=found_warnings)


class _PropertyPiece(NamedTuple):
    schema: dict[str, Any]
    defs: dict[str, Any]
    warning: str | None


_PROPERTY_CACHE_SIZE = 4096
_BASE_MODEL_SCHEMA_HOOK = inspect.getattr_static(BaseModel, "__get_pydantic_json_schema__")
_property_cache: dict[tuple[Any, ...], _PropertyPiece] = {}
_ANNOTATION_KEYS_SIZE = 4096
_annotation_keys: dict[int, tuple[Any, Any]] = {}
"""id(annotation) -> (annotation, its key): discovery hands over one object for each annotation text it saw."""


def parameter_title(name: str) -> str:
    return name.replace("_", " ").strip().title() or name


def _property_schema(param: ParameterSpec) -> _PropertyPiece:
    """One parameter's property schema and the $defs it refers to, owned by the caller: written directly for a
    simple annotation or a plain model with a JSON default, else from pydantic (cached, as workspaces repeat
    annotation shapes)."""
    has_default = param.default is not NO_DEFAULT and param.default is not UNKNOWN_DEFAULT
    if param.unsupported is None and (not has_default or is_json_value(param.default)):
        annotation = Any if param.annotation is NO_ANNOTATION else param.annotation
        type_schema = annotation_schema(annotation)
        if type_schema is not None:
            return _PropertyPiece(_field_schema(param, type_schema, has_default), {}, None)
        is_model = isinstance(annotation, type) and issubclass(annotation, BaseModel)
        definitions = _model_definitions(annotation) if is_model else None
        if definitions is not None:
            reference = {"$ref": f"#/$defs/{annotation.__name__}"}
            return _PropertyPiece(_field_schema(param, reference, has_default), json_copy(definitions), None)
    return _pydantic_property_schema(param)


def _field_schema(param: ParameterSpec, type_schema: dict[str, Any], has_default: bool) -> dict[str, Any]:
    """`type_schema` with the parameter's title, description and (JSON) default, as pydantic writes a field."""
    schema = {**type_schema, "title": parameter_title(param.name)}
    if param.description:
        schema["description"] = param.description
    if has_default:
        schema["default"] = json_copy(param.default) if isinstance(param.default, list | dict) else param.default
    # pydantic sorts the keys of every schema object; the type schemas are written sorted already
    return dict(sorted(schema.items()))


def _pydantic_property_schema(param: ParameterSpec) -> _PropertyPiece:
    annotation_key = _annotation_key(param.annotation)
    key = (param.name, annotation_key, _default_key(param.default), param.description, param.unsupported)
    try:
        cached: _PropertyPiece | None = _property_cache.get(key)
    except TypeError:
        return _PropertyPiece(*_compute_property_schema(param))
    if cached is None:
        if len(_property_cache) >= _PROPERTY_CACHE_SIZE:
            _property_cache.clear()
        cached = _property_cache[key] = _PropertyPiece(*_compute_property_schema(param))
    return _PropertyPiece(json_copy(cached.schema), json_copy(cached.defs), cached.warning)


@functools.lru_cache(maxsize=1024)
def _model_definitions(model: type[BaseModel]) -> dict[str, Any] | None:
    """The $defs a field of this model type brings along: the model's own schema under its class name, and the
    types it refers to. None where pydantic would shape the field otherwise: models with their own JSON Schema
    hook, generic or recursive models, names that clash (pydantic then qualifies them), defaults it drops."""
    name = model.__name__
    own_hook = inspect.getattr_static(model, "__get_pydantic_json_schema__") is not _BASE_MODEL_SCHEMA_HOOK
    if own_hook or not name.isidentifier():
        return None
    direct = model_definitions(model)
    if direct is not None:
        return direct
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", PydanticJsonSchemaWarning)
            schema = model.model_json_schema()
    except (PydanticJsonSchemaWarning, PydanticSchemaGenerationError, PydanticUserError, TypeError):
        return None
    definitions: dict[str, Any] = schema.pop("$defs", {})
    if "$ref" in schema or name in definitions or any("__" in key or not key.isidentifier() for key in definitions):
        return None
    definitions[name] = schema
    return dict(sorted(definitions.items()))


def _annotation_key(annotation: Any) -> Any:
    """`Annotated[str, Field(...)]` rebuilt from source holds a new FieldInfo each time; FieldInfo compares by
    identity, its repr by content."""
    if typing.get_origin(annotation) is not Annotated:
        return annotation
    known = _annotation_keys.get(id(annotation))
    if known is not None and known[0] is annotation:  # the entry holds the object: its id is not reused
        return known[1]
    base, *metadata = typing.get_args(annotation)
    key = (Annotated, base, tuple(repr(item) if isinstance(item, FieldInfo) else item for item in metadata))
    if len(_annotation_keys) >= _ANNOTATION_KEYS_SIZE:
        _annotation_keys.clear()
    _annotation_keys[id(annotation)] = (annotation, key)
    return key


def _default_key(default: Any) -> Any:
    if default is NO_DEFAULT or default is UNKNOWN_DEFAULT or default is None:
        return default
    if isinstance(default, str | int | float | bool):
        return (type(default), default)
    return (type(default), json.dumps(default, sort_keys=True, default=repr))


def _compute_property_schema(param: ParameterSpec) -> tuple[dict[str, Any], dict[str, Any], str | None]:
    if param.unsupported is not None:
        return _any_schema(param, _unsupported_warning(param.name, param.unsupported))
    field_kwargs: dict[str, Any] = {"title": parameter_title(param.name)}
    if param.description:
        field_kwargs["description"] = param.description
    if param.default is not NO_DEFAULT and param.default is not UNKNOWN_DEFAULT:
        field_kwargs["default"] = param.default
    annotation = Any if param.annotation is NO_ANNOTATION else param.annotation
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", PydanticJsonSchemaWarning)
            schema = TypeAdapter(_with_field(annotation, field_kwargs)).json_schema()
    except PydanticJsonSchemaWarning:
        field_kwargs.pop("default", None)
        schema = TypeAdapter(_with_field(annotation, field_kwargs)).json_schema()
    except (PydanticSchemaGenerationError, PydanticUserError, TypeError):
        return _any_schema(param, _unsupported_warning(param.name, type_label(annotation)))
    defs = schema.pop("$defs", {})
    return schema, defs, None


def _with_field(annotation: Any, field_kwargs: dict[str, Any]) -> Any:
    """Our title/description/default first, so the author's own `Annotated[..., Field(...)]` wins."""
    if typing.get_origin(annotation) is Annotated:
        base, *metadata = typing.get_args(annotation)
        return Annotated[(base, Field(**field_kwargs), *metadata)]
    return Annotated[annotation, Field(**field_kwargs)]


def _any_schema(param: ParameterSpec, warning: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    schema: dict[str, Any] = {"title": parameter_title(param.name)}
    if param.description:
        schema["description"] = param.description
    if param.default is not NO_DEFAULT and param.default is not UNKNOWN_DEFAULT:
        with contextlib.suppress(TypeError, ValueError):
            schema["default"] = json.loads(json.dumps(param.default))
    return schema, {}, warning


def _unsupported_warning(name: str, annotation_text: str) -> str:
    return f"parameter '{name}': type {annotation_text} cannot be described as a form field; it accepts any value"


def type_label(annotation: Any) -> str:
    if isinstance(annotation, type):
        return annotation.__qualname__
    return repr(annotation)
