"""Decorator options, their validation, and the info models that describe a workflow or a data provider.

`describe_workflow` / `describe_data_provider` are the single place where a function's shape and its
decorator options become a `WorkflowInfo` / `DataProviderInfo`, whichever front-end read them.
"""

from __future__ import annotations

import re
from datetime import datetime
from functools import cached_property, lru_cache
from typing import Annotated, Any, Literal, Self, TypeVar, get_args

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
    model_validator,
)

from bifrost import forms
from bifrost.errors import WorkflowDefinitionError
from bifrost.forms import FormField
from bifrost.parameters import build_parameters_schema
from bifrost.signatures import FunctionShape

ExecutionMode = Literal["sync", "async"]
MAX_TIMEOUT_SECONDS = 86400
DEFAULT_TIMEOUT_SECONDS = 1800
DEFAULT_DATA_PROVIDER_TIMEOUT_SECONDS = 10
MAX_DATA_PROVIDER_TIMEOUT_SECONDS = 300
"""A form waits for its options while the provider runs: a provider may not take longer than this."""

Name = Annotated[StrictStr, Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$", max_length=100)]
Timeout = Annotated[StrictInt, Field(ge=1, le=MAX_TIMEOUT_SECONDS)]
CPU_QUANTITY = r"^([0-9]+(\.[0-9]+)?|[0-9]+m)$"
"""A Kubernetes CPU quantity as Bifrost accepts it: cores ("2", "0.5") or millicores ("500m")."""
MIN_MEMORY_MB = 16
MAX_MEMORY_MB = 1024 * 1024
MemoryMb = Annotated[StrictInt, Field(ge=MIN_MEMORY_MB, le=MAX_MEMORY_MB)]


class RetryPolicy(BaseModel):
    """How often a failed execution is started again, and how long to wait before each new attempt."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    count: Annotated[StrictInt, Field(ge=0, le=10)] = 0
    backoff_seconds: Annotated[float, Field(ge=0, le=3600)] = 10.0
    backoff_factor: Annotated[float, Field(ge=1, le=10)] = 2.0

    def delay_before(self, attempt: int) -> float:
        """Seconds to wait before retry number `attempt` (1 = the first retry)."""
        return float(self.backoff_seconds * self.backoff_factor ** (attempt - 1))


@lru_cache(maxsize=1024)  # a schedule is checked in a quarter of a millisecond; workspaces repeat them
def cron_problem(expression: str) -> str | None:
    """Why `expression` is not a cron expression a schedule can follow; None when it is one. Five fields: minute,
    hour, day of month, month, day of week (`0 9 * * 1-5`)."""
    from croniter import CroniterError, croniter  # imported by the first schedule: a tenth of the SDK's import

    if len(expression.split()) != 5 or not croniter.is_valid(expression):
        return (
            "not a valid cron expression; expected five fields such as '0 9 * * *' (minute, hour, day of month, "
            "month, day of week)"
        )
    try:
        croniter(expression, datetime(2000, 1, 1)).get_next(datetime)
    except CroniterError:
        return "the cron expression names no date that exists (such as February 30)"
    return None


def millicores(quantity: str) -> float:
    """The CPU quantity `quantity` ("2", "0.5", "500m") in millicores."""
    return float(quantity[:-1]) if quantity.endswith("m") else float(quantity) * 1000


class Resources(BaseModel):
    """What the runner of a workflow may use: CPU as Kubernetes quantities, memory in MiB. An unset field keeps
    the platform's default. On Kubernetes they are the runner pod's requests and limits; podman and docker apply
    the limits to the runner's container; the local backend applies the memory limit to the runner process."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cpu_request: StrictStr | None = None
    cpu_limit: StrictStr | None = None
    memory_request_mb: MemoryMb | None = None
    memory_limit_mb: MemoryMb | None = None

    @field_validator("cpu_request", "cpu_limit")
    @classmethod
    def _cpu_quantity(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not re.fullmatch(CPU_QUANTITY, value):
            raise ValueError("not a CPU quantity; give cores such as '2' or '0.5', or millicores such as '500m'")
        if millicores(value) < 1:
            raise ValueError("a CPU quantity must be at least 1m (0.001 cores)")
        return value

    @model_validator(mode="after")
    def _limits_cover_requests(self) -> Self:
        if self.cpu_request and self.cpu_limit and millicores(self.cpu_limit) < millicores(self.cpu_request):
            raise ValueError(f"cpu_limit {self.cpu_limit!r} is below cpu_request {self.cpu_request!r}")
        if self.memory_request_mb and self.memory_limit_mb and self.memory_limit_mb < self.memory_request_mb:
            raise ValueError(
                f"memory_limit_mb {self.memory_limit_mb} is below memory_request_mb {self.memory_request_mb}"
            )
        return self


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
    resources: Resources | None = None

    @field_validator("schedule")
    @classmethod
    def _valid_cron(cls, value: str | None) -> str | None:
        problem = None if value is None else cron_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value

    @field_validator("retries", mode="before")
    @classmethod
    def _retry_count(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            return {"count": value}
        return value


class DataProviderOptions(_CommonOptions):
    timeout_seconds: Annotated[StrictInt, Field(ge=1, le=MAX_DATA_PROVIDER_TIMEOUT_SECONDS)] = (
        DEFAULT_DATA_PROVIDER_TIMEOUT_SECONDS
    )
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
    resources: Resources | None = Field(description="The runner's own resources; None: the platform's defaults.")


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
        resources=opts.resources,
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
        valid = ", ".join(_model_at(model, error["loc"][:-1]).model_fields)
        return f"unknown option '{option}' (valid options: {valid})"
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"option '{option}': {message} (got {error['input']!r})"


def _model_at(model: type[BaseModel], path: tuple[Any, ...]) -> type[BaseModel]:
    """The options model that a nested option path ("resources",) leads to, for listing its valid keys."""
    for part in path:
        field = model.model_fields.get(str(part))
        annotation = field.annotation if field else None
        nested = [
            arg for arg in (annotation, *get_args(annotation)) if isinstance(arg, type) and issubclass(arg, BaseModel)
        ]
        if not nested:
            break
        model = nested[0]
    return model
