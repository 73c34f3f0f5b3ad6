"""API keys: personal keys, service keys of an organization."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, Field, StringConstraints

from bifrost.api.orgs import OrgRole

KeyName = Annotated[str, StringConstraints(min_length=1, max_length=200)]


class ApiKeyIn(BaseModel):
    name: KeyName
    expires_at: AwareDatetime | None = Field(None, description="Unset: the key never expires.")
    org_id: str | None = Field(None, description="Bind the key to one of your organizations.")


class ServiceKeyIn(BaseModel):
    name: KeyName
    role: OrgRole = OrgRole.MEMBER
    expires_at: AwareDatetime | None = None


class ApiKeyOut(BaseModel):
    id: str
    name: str
    prefix: str = Field(description="The key's first characters, to recognise it.")
    user_id: str
    org_id: str | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="The key itself: shown only this once, store it now.")
