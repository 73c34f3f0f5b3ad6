"""Calling data providers: each call runs the provider in a fresh runner, as a sync execution of kind
`data_provider` (the calling user, their organization's secrets and config), and checks that it returned options.
Options are reused, for the provider's `cache_ttl_seconds`, by calls of the same organization with the same inputs
at the same workspace revision."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from bifrost._internal.protocol import ExecutionStatus
from bifrost._internal.schema import ParameterValidationError, validate_parameters
from bifrost.api.executions import Trigger
from bifrost.metadata import DataProviderInfo
from control_plane.data_providers.options import NotOptionsError, Option, options_of
from control_plane.data_providers.results import KeptCall, ProviderResults, result_key
from control_plane.db.models import Execution
from control_plane.errors import FieldProblem, InvalidFieldsError, NotFoundError, UpstreamError, UpstreamTimeoutError
from control_plane.executions.service import ExecutionService, Starter
from control_plane.registry import Registry
from control_plane.settings import Settings

Location = Callable[[str], tuple[str | int, ...]]
"""Where the error of an input (a dotted path: `department`, `filters.2`) is said to be in the request."""


def in_inputs(path: str) -> tuple[str | int, ...]:
    return ("inputs", *(int(part) if part.isdigit() else part for part in path.split(".") if part))


class DataProviderNotFoundError(NotFoundError):
    def __init__(self, name: str) -> None:
        super().__init__(f"no data provider named {name!r} in the workspace")


@dataclass(frozen=True)
class ProviderOptions:
    options: list[Option]
    cached: bool
    execution_id: str
    """The call that returned them (an earlier one when they were reused)."""


@dataclass(frozen=True)
class OptionsCall:
    """How a call came about: who calls, and from which form, if any."""

    starter: Starter
    trigger: Trigger = Trigger.API
    form_id: str | None = None


class DataProviderService:
    def __init__(self, db: Engine, registry: Registry, executions: ExecutionService, settings: Settings) -> None:
        self._registry = registry
        self._executions = executions
        self._results = ProviderResults(db)
        self._launch_seconds = settings.data_provider_launch_seconds

    def all(self) -> list[DataProviderInfo]:
        return list(self._registry.snapshot.data_providers.values())

    def get(self, name: str) -> DataProviderInfo:
        provider = self._registry.snapshot.data_providers.get(name)
        if provider is None:
            raise DataProviderNotFoundError(name)
        return provider

    async def options(
        self, name: str, inputs: dict[str, Any], call: OptionsCall, *, located: Location = in_inputs
    ) -> ProviderOptions:
        """The options the provider returns for `inputs`, reused when a call just like it returned them.

        Raises `DataProviderNotFoundError`; `InvalidFieldsError` for inputs its parameters refuse, each placed
        by `located`; `UpstreamError` when it fails or returns something else than options, and
        `UpstreamTimeoutError` when it does not finish in time: each names the provider and the execution."""
        snapshot = self._registry.snapshot
        provider = snapshot.data_providers.get(name)
        if provider is None:
            raise DataProviderNotFoundError(name)
        try:
            validated = validate_parameters(provider.parameters_schema, inputs)
        except ParameterValidationError as exc:
            raise InvalidFieldsError(
                [FieldProblem(located(error.field), error.message, error.type) for error in exc.errors]
            ) from exc
        org_id = call.starter.org_id
        key = result_key(org_id, name, validated, snapshot.revision)
        if provider.cache_ttl_seconds > 0:
            kept = await run_in_threadpool(self._results.get, key)
            if kept is not None:
                return ProviderOptions(kept.options, cached=True, execution_id=kept.execution_id)
        wait_seconds = provider.timeout_seconds + self._launch_seconds
        late = (
            f"data provider {name!r} did not answer within {wait_seconds:g} s (its timeout of "
            f"{provider.timeout_seconds} s, and {self._launch_seconds:g} s to start its runner)"
        )
        execution = await self._executions.call_data_provider(
            provider,
            validated,
            starter=call.starter,
            workspace_revision=snapshot.revision,
            wait_seconds=wait_seconds,
            late_reason=late,
            trigger=call.trigger,
            form_id=call.form_id,
        )
        options = _returned_options(provider, execution, late)
        if provider.cache_ttl_seconds > 0:
            kept_call = KeptCall(org_id, name, snapshot.revision, execution.id)
            await run_in_threadpool(self._results.keep, key, kept_call, options, provider.cache_ttl_seconds)
        return ProviderOptions(options, cached=False, execution_id=execution.id)


def _returned_options(provider: DataProviderInfo, execution: Execution, late: str) -> list[Option]:
    name, details = provider.name, {"provider": provider.name, "execution_id": execution.id}
    status = execution.status
    if not status.is_terminal:
        raise UpstreamTimeoutError(f"{late}; the call was cancelled", **details)
    if status is ExecutionStatus.TIMEOUT:
        raise UpstreamTimeoutError(
            f"data provider {name!r} did not finish within its timeout of {provider.timeout_seconds} s", **details
        )
    if status in (ExecutionStatus.FAILED, ExecutionStatus.CANCELLED):
        reason = ": ".join(part for part in (execution.error_type, execution.error_message) if part)
        raise UpstreamError(f"data provider {name!r} failed: {reason or status.value}", **details)
    try:
        return options_of(execution.result)
    except NotOptionsError as exc:
        raise UpstreamError(f"data provider {name!r} returned {exc}", **details) from None
