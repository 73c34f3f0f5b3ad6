"""Request and response bodies of organizations and their members (defined in `bifrost.api`); here, how each
is made."""

from __future__ import annotations

from bifrost.api import orgs as api
from bifrost.api.orgs import MemberIn, OrgIn
from control_plane.db.models import Organization
from control_plane.security.organizations import Member

__all__ = ["MemberIn", "MemberOut", "OrgIn", "OrgOut"]


class OrgOut(api.OrgOut):
    @classmethod
    def of(cls, org: Organization) -> OrgOut:
        return cls(id=org.id, name=org.name, created_at=org.created_at)


class MemberOut(api.MemberOut):
    @classmethod
    def of(cls, member: Member) -> MemberOut:
        return cls(user_id=member.user.id, email=member.user.email, name=member.user.name, role=member.role)
