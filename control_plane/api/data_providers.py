"""Data providers over HTTP: what the workspace defines, and calling one for the options of a choice."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from bifrost.metadata import DataProviderInfo
from control_plane.api.dependencies import ServicesDep, StarterDep, UserDep
from control_plane.api.models.data_providers import OptionsOut, OptionsRequest
from control_plane.data_providers.service import OptionsCall

router = APIRouter(prefix="/api/data-providers", tags=["data providers"])

_OPTIONS_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such data provider."},
    422: {"description": "Invalid inputs, one error per input."},
    502: {"description": "The provider failed, or returned something else than a list of options."},
    504: {"description": "The provider did not answer within its timeout."},
}


@router.get("")
def list_data_providers(services: ServicesDep, _user: UserDep) -> list[DataProviderInfo]:
    """The data providers of the workspace, with the schema of their inputs (`parameters_schema`)."""
    return services.data_providers.all()


@router.get("/{name}")
def get_data_provider(name: str, services: ServicesDep, _user: UserDep) -> DataProviderInfo:
    return services.data_providers.get(name)


@router.post("/{name}/options", responses=_OPTIONS_RESPONSES)
async def call_data_provider(
    name: str, services: ServicesDep, starter: StarterDep, request: OptionsRequest | None = None
) -> OptionsOut:
    """Run the provider in a fresh runner as the caller, for the organization they act for, and answer the
    options it returns; reused for its `cache_ttl_seconds` by the same organization's calls with the same inputs
    at the same workspace revision. The call is recorded as an execution of kind `data_provider`."""
    inputs = request.inputs if request else {}
    return OptionsOut.of(await services.data_providers.options(name, inputs, OptionsCall(starter)))
