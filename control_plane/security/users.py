"""Users: the caller, the members an organization's admin manages, every user for platform admins."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from control_plane.db.models import Membership, OrgRole, User
from control_plane.db.session import session_scope
from control_plane.errors import ConflictError, ForbiddenError, NotFoundError
from control_plane.security.audit import record
from control_plane.security.logins import close_sessions_of, hash_password
from control_plane.security.principals import Principal, roles_of


@dataclass(frozen=True)
class UserWithRoles:
    user: User
    roles: dict[str, OrgRole]
    """Role per organization id."""


def _with_roles(session: Session, user: User) -> UserWithRoles:
    return UserWithRoles(user, roles_of(session, user))


def get_self(db: Engine, caller: Principal) -> UserWithRoles:
    with session_scope(db) as session:
        return _with_roles(session, _user(session, caller.user_id))


def list_users(db: Engine, caller: Principal) -> list[UserWithRoles]:
    """Platform admins: every user. Org admins: the members of the organization acted for."""
    query = select(User).order_by(col(User.email))
    if not caller.is_platform_admin:
        member_ids = select(Membership.user_id).where(Membership.org_id == caller.org_id)
        query = query.where(col(User.id).in_(member_ids) | (col(User.org_id) == caller.org_id))
    with session_scope(db) as session:
        return [_with_roles(session, found) for found in session.exec(query).all()]


def create_user(
    db: Engine,
    caller: Principal,
    *,
    email: str,
    name: str | None,
    password: str | None,
    role: OrgRole,
    is_platform_admin: bool,
    ip: str,
) -> UserWithRoles:
    """A new user whose home is the organization acted for, with `role` there."""
    if is_platform_admin and not caller.is_platform_admin:
        raise ForbiddenError("only platform admins may create platform admins")
    with session_scope(db) as session:
        created = User(
            email=email,
            name=name,
            org_id=caller.org_id,
            is_platform_admin=is_platform_admin,
            password_hash=hash_password(password) if password else None,
        )
        session.add(created)
        try:
            session.flush()
        except IntegrityError as exc:
            raise ConflictError(f"a user with email {email!r} exists") from exc
        if caller.org_id is not None:
            session.add(Membership(user_id=created.id, org_id=caller.org_id, role=role.value))
        record(
            session,
            "user.created",
            actor=caller,
            org_id=caller.org_id,
            target=created.email,
            ip=ip,
            role=role.value,
            is_platform_admin=is_platform_admin,
        )
        session.commit()
        return _with_roles(session, created)


def get_user(db: Engine, caller: Principal, user_id: str) -> UserWithRoles:
    with session_scope(db) as session:
        return _with_roles(session, _manageable_user(session, caller, user_id))


def update_user(
    db: Engine, caller: Principal, user_id: str, *, changes: Mapping[str, Any], password: str | None, ip: str
) -> UserWithRoles:
    """Apply `changes` (attributes by name: name, is_active, is_platform_admin) and a new `password`. Users
    change their own name and password; platform admins change anyone, activation and admin rights."""
    is_active, is_platform_admin = changes.get("is_active"), changes.get("is_platform_admin")
    with session_scope(db) as session:
        target = _manageable_user(session, caller, user_id)
        if target.id != caller.user_id and not caller.is_platform_admin:
            raise ForbiddenError("only the user themselves or a platform admin may change a user")
        if (is_active is not None or is_platform_admin is not None) and not caller.is_platform_admin:
            raise ForbiddenError("only platform admins may change is_active or is_platform_admin")
        if target.is_platform_admin and (is_platform_admin is False or is_active is False):
            _keep_a_platform_admin(session, target)
        for attribute, value in changes.items():
            setattr(target, attribute, value)
        if password is not None:
            target.password_hash = hash_password(password)
        if password is not None or is_active is False:
            close_sessions_of(session, target.id)
        session.add(target)
        if password is not None or is_active is not None or is_platform_admin is not None:
            record(
                session,
                "user.security_changed",
                actor=caller,
                org_id=target.org_id,
                target=target.email,
                ip=ip,
                password_changed=password is not None,
                **{key: value for key, value in changes.items() if key != "name"},
            )
        session.commit()
        return _with_roles(session, target)


def _keep_a_platform_admin(session: Session, leaving: User) -> None:
    others = select(User).where(col(User.is_platform_admin), col(User.is_active), User.id != leaving.id)
    if session.exec(others).first() is None:
        raise ConflictError(f"{leaving.email} is the last active platform admin: make another first")


def _user(session: Session, user_id: str) -> User:
    found = session.get(User, user_id)
    if found is None:
        raise NotFoundError(f"no user {user_id!r}")
    return found


def _manageable_user(session: Session, caller: Principal, user_id: str) -> User:
    """The user if it is the caller, a member of an org the caller administers, or the caller is a platform
    admin; `NotFoundError` otherwise."""
    found = _user(session, user_id)
    if found.id == caller.user_id or caller.is_platform_admin:
        return found
    if any(caller.may_administer_org(org_id) for org_id in roles_of(session, found)):
        return found
    raise NotFoundError(f"no user {user_id!r}")
