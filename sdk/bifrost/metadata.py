"""Decorator options, their validation, and the info models that describe a workflow or a data provider.

`describe_workflow` / `describe_data_provider` are the single place where a function's shape and its
decorator options become a `WorkflowInfo` / `DataProviderInfo`, whichever front-end read them.
"""

from __future__ import annotations

from functools import cached_property
from typing import Annotated, Any, Literal, TypeVar

from croniter import croniter
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    computed_field,
    field_validator,
)

from bifrost import forms
from bifrost.errors import WorkflowDefinitionError
from bifrost.forms import FormField
from bifrost.parameters import build_parameters_schema
from bifrost.signatures import FunctionShape

ExecutionMode = Literal["sync", "async"]
MAX_TIMEOUT_SECONDS = 86400
DEFAULT_TIMEOUT_SECONDS = 1800
DEFAULT_DATA_PROVIDER_TIMEOUT_SECONDS = 60

Name = Annotated[StrictStr, Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$", max_length=100)]
Timeout = Annotated[StrictInt, Field(ge=1, le=MAX_TIMEOUT_SECONDS)]


class RetryPolicy(BaseModel):
    """How often a failed execution is started again, and how long to wait before each new attempt."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    count: Annotated[StrictInt, Field(ge=0, le=10)] = 0
    backoff_seconds: Annotated[float, Field(ge=0, le=3600)] = 10.0
    backoff_factor: Annotated[float, Field(ge=1, le=10)] = 2.0

    def delay_before(self, attempt: int) -> float:
        """Seconds to wait before retry number `attempt` (1 = the first retry)."""
        return float(self.backoff_seconds * self.backoff_factor ** (attempt - 1))


class _CommonOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    description: StrictStr | None = None
    category: StrictStr | None = None


class WorkflowOptions(_CommonOptions):
    tags: list[StrictStr] = []
    execution_mode: ExecutionMode | None = None
    schedule: StrictStr | None = None
    timeout_seconds: Timeout = DEFAULT_TIMEOUT_SECONDS
    endpoint_enabled: StrictBool = False
    retries: RetryPolicy = RetryPolicy()
    max_concurrency: Annotated[StrictInt, Field(ge=1)] | None = None

    @field_validator("schedule")
    @classmethod
    def _valid_cron(cls, value: str | None) -> str | None:
        if value is not None and not croniter.is_valid(value):
            raise ValueError("not a valid cron expression; expected five fields such as '0 9 * * *'")
        return value

    @field_validator("retries", mode="before")
    @classmethod
    def _retry_count(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            return {"count": value}
        return value


class DataProviderOptions(_CommonOptions):
    timeout_seconds: Timeout = DEFAULT_DATA_PROVIDER_TIMEOUT_SECONDS
    cache_ttl_seconds: Annotated[StrictInt, Field(ge=0, le=MAX_TIMEOUT_SECONDS)] = 300


class _FunctionInfo(BaseModel):
    name: str
    description: str | None
    category: str | None
    file: str = Field(description="Path of the defining module, relative to the workspace root (POSIX).")
    line: int = Field(description="Line of the first decorator (the function's first line).")
    function_name: str
    is_async: bool
    timeout_seconds: int
    parameters_schema: dict[str, Any]
    warnings: list[str] = []

    @computed_field  # type: ignore[prop-decorator]
    @cached_property
    def form_fields(self) -> list[FormField]:
        """How a form renders each parameter (derived from `parameters_schema`)."""
        return forms.form_fields(self.parameters_schema)


class WorkflowInfo(_FunctionInfo):
    tags: list[str]
    execution_mode: ExecutionMode
    schedule: str | None
    endpoint_enabled: bool
    retries: RetryPolicy
    max_concurrency: int | None


class DataProviderInfo(_FunctionInfo):
    cache_ttl_seconds: int


_Options = TypeVar("_Options", bound=_CommonOptions)


# The info models are built by ordinary validation: pydantic-core validates them faster than `model_construct`
# (pure Python) would copy the values in, and discovery builds thousands of them per scan.


def describe_workflow(shape: FunctionShape, options: dict[str, Any]) -> WorkflowInfo:
    opts = _validated(WorkflowOptions, "@workflow", shape.function_name, options)
    common = _common_fields("@workflow", shape, opts)
    return WorkflowInfo(
        **common,
        timeout_seconds=opts.timeout_seconds,
        tags=list(opts.tags),
        execution_mode=opts.execution_mode or ("sync" if opts.endpoint_enabled else "async"),
        schedule=opts.schedule,
        endpoint_enabled=opts.endpoint_enabled,
        retries=opts.retries,
        max_concurrency=opts.max_concurrency,
    )


def describe_data_provider(shape: FunctionShape, options: dict[str, Any]) -> DataProviderInfo:
    opts = _validated(DataProviderOptions, "@data_provider", shape.function_name, options)
    common = _common_fields("@data_provider", shape, opts)
    return DataProviderInfo(**common, timeout_seconds=opts.timeout_seconds, cache_ttl_seconds=opts.cache_ttl_seconds)


def _common_fields(decorator: str, shape: FunctionShape, opts: _CommonOptions) -> dict[str, Any]:
    if shape.problems:
        raise WorkflowDefinitionError(f"{decorator} {shape.function_name}: {'; '.join(shape.problems)}")
    try:
        parameters = build_parameters_schema(shape.parameters)
    except WorkflowDefinitionError as exc:
        raise WorkflowDefinitionError(f"{decorator} {shape.function_name}: {exc}") from None
    return {
        "name": opts.name or shape.function_name,
        "description": opts.description or shape.docstring.summary,
        "category": opts.category,
        "file": shape.file,
        "line": shape.line,
        "function_name": shape.function_name,
        "is_async": shape.is_async,
        "parameters_schema": parameters.schema,
        "warnings": parameters.warnings,
    }


def _validated(model: type[_Options], decorator: str, function_name: str, options: dict[str, Any]) -> _Options:
    try:
        return model.model_validate(options)
    except ValidationError as exc:
        problems = "; ".join(_option_problem(error, model) for error in exc.errors())
        raise WorkflowDefinitionError(f"{decorator} {function_name}: {problems}") from None


def _option_problem(error: Any, model: type[BaseModel]) -> str:
    option = ".".join(str(part) for part in error["loc"])
    if error["type"] == "extra_forbidden":
        valid = ", ".join(model.model_fields)
        return f"unknown option '{option}' (valid options: {valid})"
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"option '{option}': {message} (got {error['input']!r})"
