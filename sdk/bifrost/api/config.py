"""Config entries: plain JSON values per organization, with global fallback."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class ConfigIn(BaseModel):
    value: Any = Field(description="Any JSON value.")


class ConfigOut(BaseModel):
    name: str
    value: Any
    org_id: str | None = Field(description="NULL: global, the fallback of every organization.")
    updated_at: datetime
