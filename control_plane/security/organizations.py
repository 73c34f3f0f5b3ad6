"""Organizations and their members: platform admins make and rename organizations; an organization's admins
manage its members' roles."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from control_plane.db.models import Membership, Organization, OrgRole, User
from control_plane.db.session import session_scope
from control_plane.errors import ConflictError, ForbiddenError, NotFoundError
from control_plane.security.audit import record
from control_plane.security.principals import Principal, roles_of


@dataclass(frozen=True)
class Member:
    user: User
    role: OrgRole


def list_orgs(db: Engine, caller: Principal) -> list[Organization]:
    """Every organization for platform admins; the caller's own for anyone else."""
    query = select(Organization).order_by(col(Organization.name))
    if not caller.is_platform_admin:
        query = query.where(col(Organization.id).in_([o for o in caller.roles if caller.may_see_org(o)]))
    with session_scope(db) as session:
        return list(session.exec(query).all())


def create_org(db: Engine, caller: Principal, name: str, *, ip: str) -> Organization:
    with session_scope(db) as session:
        org = Organization(name=name)
        session.add(org)
        record(session, "org.created", actor=caller, org_id=org.id, target=name, ip=ip)
        _commit_named(session, name)
        return org


def get_org(db: Engine, caller: Principal, org_id: str) -> Organization:
    with session_scope(db) as session:
        return _visible_org(session, caller, org_id)


def rename_org(db: Engine, caller: Principal, org_id: str, name: str, *, ip: str) -> Organization:
    with session_scope(db) as session:
        org = _visible_org(session, caller, org_id)
        record(session, "org.renamed", actor=caller, org_id=org.id, target=name, ip=ip)
        org.name = name
        session.add(org)
        _commit_named(session, name)
        return org


def list_members(db: Engine, caller: Principal, org_id: str) -> list[Member]:
    with session_scope(db) as session:
        _administered_org(session, caller, org_id)
        members = session.exec(
            select(User)
            .outerjoin(Membership, (col(Membership.user_id) == col(User.id)) & (col(Membership.org_id) == org_id))
            .where((col(Membership.id).is_not(None)) | (col(User.org_id) == org_id))
            .order_by(col(User.email))
        ).all()
        return [Member(member, roles_of(session, member)[org_id]) for member in members]


def set_member(db: Engine, caller: Principal, org_id: str, user_id: str, role: OrgRole, *, ip: str) -> Member:
    """Change a member's role. Platform admins may also add any user to the organization."""
    with session_scope(db) as session:
        _administered_org(session, caller, org_id)
        member = session.get(User, user_id)
        previous = roles_of(session, member).get(org_id) if member else None
        if member is None or (previous is None and not caller.is_platform_admin):
            raise NotFoundError(f"no member {user_id!r} in this organization")
        membership = _membership(session, org_id, user_id) or Membership(user_id=user_id, org_id=org_id, role="")
        membership.role = role.value
        session.add(membership)
        record(
            session,
            "membership.changed",
            actor=caller,
            org_id=org_id,
            target=member.email,
            ip=ip,
            role=role.value,
            previous_role=previous.value if previous else None,
        )
        session.commit()
        return Member(member, role)


def remove_member(db: Engine, caller: Principal, org_id: str, user_id: str, *, ip: str) -> None:
    with session_scope(db) as session:
        _administered_org(session, caller, org_id)
        member = session.get(User, user_id)
        if member is None or org_id not in roles_of(session, member):
            raise NotFoundError(f"no member {user_id!r} in this organization")
        membership = _membership(session, org_id, user_id)
        if membership is not None:
            session.delete(membership)
        if member.org_id == org_id:
            member.org_id = None  # the home organization would otherwise still count as membership
            session.add(member)
        record(session, "membership.removed", actor=caller, org_id=org_id, target=member.email, ip=ip)
        session.commit()


def _visible_org(session: Session, caller: Principal, org_id: str) -> Organization:
    """The organization if the caller may see it; `NotFoundError` otherwise, so other tenants' ids reveal
    nothing."""
    org = session.get(Organization, org_id) if caller.may_see_org(org_id) else None
    if org is None:
        raise NotFoundError(f"no organization {org_id!r}")
    return org


def _administered_org(session: Session, caller: Principal, org_id: str) -> Organization:
    org = _visible_org(session, caller, org_id)
    if not caller.may_administer_org(org_id):
        raise ForbiddenError("only admins of this organization may do this")
    return org


def _commit_named(session: Session, name: str) -> None:
    """Commit an organization now named `name`; `ConflictError` when another organization has that name."""
    try:
        session.commit()
    except IntegrityError as exc:
        raise ConflictError(f"an organization named {name!r} exists") from exc


def _membership(session: Session, org_id: str, user_id: str) -> Membership | None:
    return session.exec(select(Membership).where(Membership.org_id == org_id, Membership.user_id == user_id)).first()
