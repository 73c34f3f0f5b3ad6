"""Secrets: values go in, and never come out through the API."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class SecretIn(BaseModel):
    value: str = Field(min_length=1, max_length=65536)


class SecretOut(BaseModel):
    """A secret without its value."""

    name: str
    org_id: str | None = Field(description="NULL: global, the fallback of every organization.")
    updated_at: datetime
    updated_by: str | None


class RotationOut(BaseModel):
    rotated: int = Field(description="How many secrets were re-encrypted with the newest key.")
