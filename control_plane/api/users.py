"""Users over HTTP: the caller, the members an org admin manages, every user for platform admins."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Request, status
from pydantic import BaseModel, Field, StringConstraints
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from control_plane.api.dependencies import OrgAdminDep, ServicesDep, UserDep, client_address, forbidden
from control_plane.db.models import Membership, OrgRole, User
from control_plane.db.session import session_scope
from control_plane.security.audit import record
from control_plane.security.logins import MIN_PASSWORD_LENGTH, close_sessions_of, hash_password
from control_plane.security.principals import Principal, roles_of

router = APIRouter(prefix="/api/users", tags=["users"])

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

    @classmethod
    def of(cls, session: Session, user: User) -> UserOut:
        return cls(
            id=user.id,
            email=user.email,
            name=user.name,
            org_id=user.org_id,
            roles=roles_of(session, user),
            is_platform_admin=user.is_platform_admin,
            is_active=user.is_active,
            is_service_account=user.is_service_account,
            has_password=user.password_hash is not None,
            created_at=user.created_at,
        )


@router.get("/me")
def me(services: ServicesDep, user: UserDep) -> UserOut:
    with session_scope(services.db_engine) as session:
        return UserOut.of(session, _user(session, user.user_id))


@router.get("")
def list_users(services: ServicesDep, user: OrgAdminDep) -> list[UserOut]:
    """Platform admins: every user. Org admins: the members of the organization acted for."""
    with session_scope(services.db_engine) as session:
        query = select(User).order_by(col(User.email))
        if not user.is_platform_admin:
            member_ids = select(Membership.user_id).where(Membership.org_id == user.org_id)
            query = query.where(col(User.id).in_(member_ids) | (col(User.org_id) == user.org_id))
        return [UserOut.of(session, found) for found in session.exec(query).all()]


@router.post("", status_code=status.HTTP_201_CREATED)
def create_user(body: UserIn, request: Request, services: ServicesDep, user: OrgAdminDep) -> UserOut:
    """A new user whose home is the organization acted for, with the given role there."""
    if body.is_platform_admin and not user.is_platform_admin:
        raise forbidden("only platform admins may create platform admins")
    with session_scope(services.db_engine) as session:
        created = User(
            email=body.email,
            name=body.name,
            org_id=user.org_id,
            is_platform_admin=body.is_platform_admin,
            password_hash=hash_password(body.password) if body.password else None,
        )
        session.add(created)
        try:
            session.flush()
        except IntegrityError as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, detail=f"a user with email {body.email!r} exists") from exc
        if user.org_id is not None:
            session.add(Membership(user_id=created.id, org_id=user.org_id, role=body.role.value))
        record(
            session,
            "user.created",
            actor=user,
            org_id=user.org_id,
            target=created.email,
            ip=client_address(request),
            role=body.role.value,
            is_platform_admin=body.is_platform_admin,
        )
        session.commit()
        return UserOut.of(session, created)


@router.get("/{user_id}")
def get_user(user_id: str, services: ServicesDep, user: UserDep) -> UserOut:
    with session_scope(services.db_engine) as session:
        return UserOut.of(session, _manageable_user(session, user, user_id))


@router.patch("/{user_id}")
def update_user(user_id: str, body: UserPatch, request: Request, services: ServicesDep, user: UserDep) -> UserOut:
    """Users change their own name and password; platform admins change anyone, activation and admin rights."""
    with session_scope(services.db_engine) as session:
        target = _manageable_user(session, user, user_id)
        if target.id != user.user_id and not user.is_platform_admin:
            raise forbidden("only the user themselves or a platform admin may change a user")
        if (body.is_active is not None or body.is_platform_admin is not None) and not user.is_platform_admin:
            raise forbidden("only platform admins may change is_active or is_platform_admin")
        if target.is_platform_admin and (body.is_platform_admin is False or body.is_active is False):
            _keep_a_platform_admin(session, target)
        changes = body.model_dump(exclude_unset=True, exclude={"password"})
        for attribute, value in changes.items():
            setattr(target, attribute, value)
        if body.password is not None:
            target.password_hash = hash_password(body.password)
        if body.password is not None or body.is_active is False:
            close_sessions_of(session, target.id)
        session.add(target)
        if body.password is not None or body.is_active is not None or body.is_platform_admin is not None:
            record(
                session,
                "user.security_changed",
                actor=user,
                org_id=target.org_id,
                target=target.email,
                ip=client_address(request),
                password_changed=body.password is not None,
                **{key: value for key, value in changes.items() if key != "name"},
            )
        session.commit()
        return UserOut.of(session, target)


def _keep_a_platform_admin(session: Session, leaving: User) -> None:
    others = select(User).where(col(User.is_platform_admin), col(User.is_active), User.id != leaving.id)
    if session.exec(others).first() is None:
        raise HTTPException(
            status.HTTP_409_CONFLICT, detail=f"{leaving.email} is the last active platform admin: make another first"
        )


def _user(session: Session, user_id: str) -> User:
    found = session.get(User, user_id)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no user {user_id!r}")
    return found


def _manageable_user(session: Session, caller: Principal, user_id: str) -> User:
    """The user if it is the caller, a member of an org the caller administers, or the caller is a platform
    admin; 404 otherwise."""
    found = _user(session, user_id)
    if found.id == caller.user_id or caller.is_platform_admin:
        return found
    if any(caller.may_administer_org(org_id) for org_id in roles_of(session, found)):
        return found
    raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no user {user_id!r}")
