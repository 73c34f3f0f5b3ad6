"""Request and response bodies of organizations and their members."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from control_plane.db.models import Organization, OrgRole
from control_plane.security.organizations import Member


class OrgIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)


class OrgOut(BaseModel):
    id: str
    name: str
    created_at: datetime

    @classmethod
    def of(cls, org: Organization) -> OrgOut:
        return cls(id=org.id, name=org.name, created_at=org.created_at)


class MemberIn(BaseModel):
    role: OrgRole


class MemberOut(BaseModel):
    user_id: str
    email: str
    name: str | None
    role: OrgRole

    @classmethod
    def of(cls, member: Member) -> MemberOut:
        return cls(user_id=member.user.id, email=member.user.email, name=member.user.name, role=member.role)
