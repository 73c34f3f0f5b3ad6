"""Organizations and their members over HTTP."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, HTTPException, Request, Response, status
from pydantic import BaseModel, Field
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from control_plane.api.dependencies import PlatformAdminDep, ServicesDep, UserDep, client_address, forbidden
from control_plane.db.models import Membership, Organization, OrgRole, User
from control_plane.db.session import session_scope
from control_plane.security.audit import record
from control_plane.security.principals import Principal, roles_of

router = APIRouter(prefix="/api/orgs", tags=["organizations"])


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


def visible_org(session: Session, user: Principal, org_id: str) -> Organization:
    """The organization if the caller may see it; 404 otherwise, so other tenants' ids reveal nothing."""
    org = session.get(Organization, org_id) if user.may_see_org(org_id) else None
    if org is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no organization {org_id!r}")
    return org


def administered_org(session: Session, user: Principal, org_id: str) -> Organization:
    org = visible_org(session, user, org_id)
    if not user.may_administer_org(org_id):
        raise forbidden("only admins of this organization may do this")
    return org


@router.get("")
def list_orgs(services: ServicesDep, user: UserDep) -> list[OrgOut]:
    """Every organization for platform admins; the caller's own for anyone else."""
    with session_scope(services.db_engine) as session:
        query = select(Organization).order_by(col(Organization.name))
        if not user.is_platform_admin:
            query = query.where(col(Organization.id).in_([o for o in user.roles if user.may_see_org(o)]))
        return [OrgOut.of(org) for org in session.exec(query).all()]


@router.post("", status_code=status.HTTP_201_CREATED)
def create_org(body: OrgIn, request: Request, services: ServicesDep, user: PlatformAdminDep) -> OrgOut:
    with session_scope(services.db_engine) as session:
        org = Organization(name=body.name)
        session.add(org)
        record(session, "org.created", actor=user, org_id=org.id, target=body.name, ip=client_address(request))
        _commit_named(session, body.name)
        return OrgOut.of(org)


@router.get("/{org_id}")
def get_org(org_id: str, services: ServicesDep, user: UserDep) -> OrgOut:
    with session_scope(services.db_engine) as session:
        return OrgOut.of(visible_org(session, user, org_id))


@router.patch("/{org_id}")
def rename_org(org_id: str, body: OrgIn, request: Request, services: ServicesDep, user: PlatformAdminDep) -> OrgOut:
    with session_scope(services.db_engine) as session:
        org = visible_org(session, user, org_id)
        record(session, "org.renamed", actor=user, org_id=org.id, target=body.name, ip=client_address(request))
        org.name = body.name
        session.add(org)
        _commit_named(session, body.name)
        return OrgOut.of(org)


def _commit_named(session: Session, name: str) -> None:
    """Commit an organization now named `name`; 409 when another organization has that name."""
    try:
        session.commit()
    except IntegrityError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=f"an organization named {name!r} exists") from exc


@router.get("/{org_id}/members")
def list_members(org_id: str, services: ServicesDep, user: UserDep) -> list[MemberOut]:
    with session_scope(services.db_engine) as session:
        administered_org(session, user, org_id)
        members = session.exec(
            select(User)
            .outerjoin(Membership, (col(Membership.user_id) == col(User.id)) & (col(Membership.org_id) == org_id))
            .where((col(Membership.id).is_not(None)) | (col(User.org_id) == org_id))
            .order_by(col(User.email))
        ).all()
        return [_member_out(member, roles_of(session, member)[org_id]) for member in members]


@router.put("/{org_id}/members/{user_id}")
def set_member(
    org_id: str, user_id: str, body: MemberIn, request: Request, services: ServicesDep, user: UserDep
) -> MemberOut:
    """Change a member's role. Platform admins may also add any user to the organization."""
    with session_scope(services.db_engine) as session:
        administered_org(session, user, org_id)
        member = session.get(User, user_id)
        previous = roles_of(session, member).get(org_id) if member else None
        if member is None or (previous is None and not user.is_platform_admin):
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no member {user_id!r} in this organization")
        membership = _membership(session, org_id, user_id) or Membership(user_id=user_id, org_id=org_id, role="")
        membership.role = body.role.value
        session.add(membership)
        record(
            session,
            "membership.changed",
            actor=user,
            org_id=org_id,
            target=member.email,
            ip=client_address(request),
            role=body.role.value,
            previous_role=previous.value if previous else None,
        )
        session.commit()
        return _member_out(member, body.role)


@router.delete("/{org_id}/members/{user_id}", status_code=status.HTTP_204_NO_CONTENT)
def remove_member(org_id: str, user_id: str, request: Request, services: ServicesDep, user: UserDep) -> Response:
    with session_scope(services.db_engine) as session:
        administered_org(session, user, org_id)
        member = session.get(User, user_id)
        if member is None or org_id not in roles_of(session, member):
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no member {user_id!r} in this organization")
        membership = _membership(session, org_id, user_id)
        if membership is not None:
            session.delete(membership)
        if member.org_id == org_id:
            member.org_id = None  # the home organization would otherwise still count as membership
            session.add(member)
        record(
            session, "membership.removed", actor=user, org_id=org_id, target=member.email, ip=client_address(request)
        )
        session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _membership(session: Session, org_id: str, user_id: str) -> Membership | None:
    return session.exec(select(Membership).where(Membership.org_id == org_id, Membership.user_id == user_id)).first()


def _member_out(member: User, role: OrgRole) -> MemberOut:
    return MemberOut(user_id=member.id, email=member.email, name=member.name, role=role)
