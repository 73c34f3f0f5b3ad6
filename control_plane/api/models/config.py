"""Request and response bodies of config entries."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from control_plane.db.models import ConfigEntry


class ConfigIn(BaseModel):
    value: Any = Field(description="Any JSON value.")


class ConfigOut(BaseModel):
    name: str
    value: Any
    org_id: str | None = Field(description="NULL: global, the fallback of every organization.")
    updated_at: datetime

    @classmethod
    def of(cls, entry: ConfigEntry) -> ConfigOut:
        return cls(name=entry.name, value=entry.value, org_id=entry.org_id, updated_at=entry.updated_at)
