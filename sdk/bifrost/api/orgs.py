"""Organizations and their members."""

from __future__ import annotations

import enum
from datetime import datetime

from pydantic import BaseModel, Field


class OrgRole(enum.StrEnum):
    """A user's role within one organization. Platform admins stand above these."""

    ORG_ADMIN = "org_admin"
    MEMBER = "member"


class OrgIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)


class OrgOut(BaseModel):
    id: str
    name: str
    created_at: datetime


class MemberIn(BaseModel):
    role: OrgRole


class MemberOut(BaseModel):
    user_id: str
    email: str
    name: str | None
    role: OrgRole
