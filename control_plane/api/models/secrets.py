"""Request and response bodies of secrets: values go in, and never come out here."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from control_plane.db.models import Secret


class SecretIn(BaseModel):
    value: str = Field(min_length=1, max_length=65536)


class SecretOut(BaseModel):
    """A secret without its value."""

    name: str
    org_id: str | None = Field(description="NULL: global, the fallback of every organization.")
    updated_at: datetime
    updated_by: str | None

    @classmethod
    def of(cls, secret: Secret) -> SecretOut:
        return cls(name=secret.name, org_id=secret.org_id, updated_at=secret.updated_at, updated_by=secret.updated_by)


class RotationOut(BaseModel):
    rotated: int = Field(description="How many secrets were re-encrypted with the newest key.")
