"""Request and response bodies of data providers (described by `bifrost.metadata.DataProviderInfo`)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from control_plane.data_providers.options import Option
from control_plane.data_providers.service import ProviderOptions


class OptionsRequest(BaseModel):
    inputs: dict[str, Any] = Field(default_factory=dict, description="The provider's parameters by name.")


class OptionsOut(BaseModel):
    options: list[Option]
    cached: bool = Field(description="Reused from an earlier call of the same organization, inputs and revision.")
    execution_id: str = Field(description="The call that returned them: its logs and errors are kept.")

    @classmethod
    def of(cls, result: ProviderOptions) -> OptionsOut:
        return cls(options=result.options, cached=result.cached, execution_id=result.execution_id)
