"""Users."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, Field, StringConstraints

from bifrost.api.orgs import OrgRole

MIN_PASSWORD_LENGTH = 12

Email = Annotated[str, StringConstraints(pattern=r"^[^@\s]+@[^@\s]+$", max_length=254, to_lower=True)]
Password = Annotated[str, StringConstraints(min_length=MIN_PASSWORD_LENGTH, max_length=1024)]
DisplayName = Annotated[str, StringConstraints(min_length=1, max_length=200)]


class UserIn(BaseModel):
    email: Email
    name: DisplayName | None = None
    password: Password | None = Field(None, description="Enables password login at /login.")
    role: OrgRole = Field(OrgRole.MEMBER, description="Role in the organization acted for.")
    is_platform_admin: bool = Field(False, description="Platform admins only.")


class UserPatch(BaseModel):
    name: DisplayName | None = None
    password: Password | None = Field(None, description="The user or a platform admin; logs out every session.")
    is_active: bool | None = Field(None, description="Platform admins only.")
    is_platform_admin: bool | None = Field(None, description="Platform admins only.")


class UserOut(BaseModel):
    id: str
    email: str
    name: str | None
    org_id: str | None = Field(description="The home organization, acted for by default.")
    roles: dict[str, OrgRole] = Field(description="Role per organization id.")
    is_platform_admin: bool
    is_active: bool
    is_service_account: bool
    has_password: bool
    created_at: datetime
