"""Principals: a user as a caller, with their role per organization and the organization they act for."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from sqlalchemy import bindparam
from sqlmodel import Session, col, select

from control_plane.db.models import Membership, Organization, OrgRole, User
from control_plane.errors import ForbiddenError, NotFoundError


@dataclass(frozen=True)
class Principal:
    """Who is calling, and for which organization (`org_id`, the acting org) they act in this request."""

    user_id: str
    org_id: str | None
    email: str
    name: str | None
    is_platform_admin: bool
    roles: Mapping[str, OrgRole] = field(default_factory=dict, hash=False, compare=False)
    key_org_id: str | None = field(default=None, compare=False)
    session_id: str | None = field(default=None, compare=False)

    def role_in(self, org_id: str) -> OrgRole | None:
        return self.roles.get(org_id)

    def may_see_org(self, org_id: str | None) -> bool:
        """Platform admins see every org and the global scope; others only the orgs they belong to."""
        if self.is_platform_admin:
            return True
        return org_id is not None and org_id in self.roles and self.key_org_id in (None, org_id)

    def may_administer_org(self, org_id: str | None) -> bool:
        if self.is_platform_admin:
            return True
        return self.may_see_org(org_id) and org_id is not None and self.roles.get(org_id) is OrgRole.ORG_ADMIN


# Built once: building a statement costs more than running it, and this runs on every request.
_MEMBERSHIPS_QUERY = select(Membership).where(col(Membership.user_id) == bindparam("user_id"))


def roles_of(session: Session, user: User) -> dict[str, OrgRole]:
    """The user's role per organization. The user's home org (`User.org_id`) counts as membership."""
    memberships = session.exec(_MEMBERSHIPS_QUERY, params={"user_id": user.id}).all()
    return roles_from(((membership.org_id, membership.role) for membership in memberships), user.org_id)


def roles_from(memberships: Iterable[tuple[str, str]], home_org_id: str | None) -> dict[str, OrgRole]:
    """Role per organization from (org, role) memberships; the home org counts as membership."""
    roles = {org_id: OrgRole(role) for org_id, role in memberships}
    if home_org_id is not None:
        roles.setdefault(home_org_id, OrgRole.MEMBER)
    return roles


def principal_of(
    session: Session, user: User, *, key_org_id: str | None = None, session_id: str | None = None
) -> Principal:
    """The user as a caller, acting for the key's org, else their home org, else their only org."""
    return make_principal(
        user_id=user.id,
        home_org_id=user.org_id,
        email=user.email,
        name=user.name,
        is_platform_admin=user.is_platform_admin,
        roles=roles_of(session, user),
        key_org_id=key_org_id,
        session_id=session_id,
    )


def make_principal(
    *,
    user_id: str,
    home_org_id: str | None,
    email: str,
    name: str | None,
    is_platform_admin: bool,
    roles: dict[str, OrgRole],
    key_org_id: str | None = None,
    session_id: str | None = None,
) -> Principal:
    """A principal acting for the key's org, else the home org, else the only org among `roles`."""
    if key_org_id is not None:
        org_id: str | None = key_org_id
    elif home_org_id is not None:
        org_id = home_org_id
    else:
        org_id = next(iter(roles)) if len(roles) == 1 else None
    return Principal(
        user_id=user_id,
        org_id=org_id,
        email=email,
        name=name,
        is_platform_admin=is_platform_admin,
        roles=roles,
        key_org_id=key_org_id,
        session_id=session_id,
    )


def acting_for(session: Session, principal: Principal, org_id: str) -> Principal:
    """The principal acting for `org_id` (the `X-Bifrost-Org` header). `ForbiddenError` when they may not act
    for it, `NotFoundError` when a platform admin names an organization that does not exist."""
    if principal.key_org_id is not None and org_id != principal.key_org_id:
        raise ForbiddenError(f"this API key is bound to organization {principal.key_org_id!r}")
    if principal.is_platform_admin:
        if session.get(Organization, org_id) is None:
            raise NotFoundError(f"no organization {org_id!r}")
    elif org_id not in principal.roles:
        raise ForbiddenError(f"you are not a member of organization {org_id!r}")
    return replace(principal, org_id=org_id)
