"""API keys over HTTP: personal keys, service keys of an organization, revocation. A key is shown only once."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Request, Response, status
from pydantic import AwareDatetime, BaseModel, Field, StringConstraints
from sqlmodel import Session, col, select

from control_plane.api.dependencies import OrgAdminDep, ServicesDep, UserDep, client_address, forbidden
from control_plane.db.models import ApiKey, Organization, OrgRole, User, utcnow
from control_plane.db.session import session_scope
from control_plane.security.audit import record
from control_plane.security.principals import Principal, create_service_account, issue_api_key

router = APIRouter(prefix="/api/keys", tags=["api keys"])

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

    @classmethod
    def of(cls, key: ApiKey) -> ApiKeyOut:
        return cls.model_validate(key, from_attributes=True)


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="The key itself: shown only this once, store it now.")


@router.get("")
def list_keys(services: ServicesDep, user: UserDep) -> list[ApiKeyOut]:
    """The caller's own keys, and for admins of the organization acted for its service keys."""
    with session_scope(services.db_engine) as session:
        owned = col(ApiKey.user_id) == user.user_id
        if user.org_id is not None and user.may_administer_org(user.org_id):
            service_users = select(User.id).where(col(User.is_service_account), User.org_id == user.org_id)
            owned = owned | col(ApiKey.user_id).in_(service_users)
        keys = session.exec(select(ApiKey).where(owned).order_by(col(ApiKey.created_at))).all()
        return [ApiKeyOut.of(key) for key in keys]


@router.post("", status_code=status.HTTP_201_CREATED)
def create_key(body: ApiKeyIn, request: Request, services: ServicesDep, user: UserDep) -> ApiKeyCreated:
    """A personal key of the caller."""
    _check_expiry(body.expires_at)
    if user.key_org_id is not None and body.org_id != user.key_org_id:
        raise forbidden("a key bound to an organization may only create keys bound to the same organization")
    with session_scope(services.db_engine) as session:
        if body.org_id is not None and (
            not user.may_see_org(body.org_id) or not session.get(Organization, body.org_id)
        ):
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no organization {body.org_id!r}")
        owner = session.get(User, user.user_id)
        if owner is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail="your user no longer exists")
        key, stored = issue_api_key(session, user=owner, name=body.name, org_id=body.org_id, expires_at=body.expires_at)
        return _created(session, user, key, stored, request)


@router.post("/service", status_code=status.HTTP_201_CREATED)
def create_service_key(body: ServiceKeyIn, request: Request, services: ServicesDep, user: OrgAdminDep) -> ApiKeyCreated:
    """A key of the organization acted for, held by a new service account with `role`; it keeps working when
    the admin who made it leaves."""
    _check_expiry(body.expires_at)
    with session_scope(services.db_engine) as session:
        org = session.get(Organization, user.org_id) if user.org_id else None
        if org is None:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, detail="no organization selected for the service key")
        account = create_service_account(session, org=org, name=body.name, role=body.role)
        key, stored = issue_api_key(session, user=account, name=body.name, org_id=org.id, expires_at=body.expires_at)
        return _created(session, user, key, stored, request, role=body.role.value)


@router.delete("/{key_id}", status_code=status.HTTP_204_NO_CONTENT)
def revoke_key(key_id: str, request: Request, services: ServicesDep, user: UserDep) -> Response:
    """Revoke a key: the owner, an admin of a service key's organization, or a platform admin."""
    with session_scope(services.db_engine) as session:
        key = session.get(ApiKey, key_id)
        owner = session.get(User, key.user_id) if key else None
        if key is None or owner is None or not _may_revoke(user, key, owner):
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no API key {key_id!r}")
        if key.revoked_at is None:
            key.revoked_at = utcnow()
            session.add(key)
            record(
                session, "api_key.revoked", actor=user, org_id=key.org_id, target=key.prefix, ip=client_address(request)
            )
            session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _may_revoke(user: Principal, key: ApiKey, owner: User) -> bool:
    if user.is_platform_admin or key.user_id == user.user_id:
        return True
    return owner.is_service_account and user.may_administer_org(key.org_id)


def _check_expiry(expires_at: datetime | None) -> None:
    if expires_at is None:
        return
    try:
        expires_at.astimezone(UTC)
    except OverflowError as exc:
        # PostgreSQL would store it, but no one could read the key list back.
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, detail="expires_at must be before the year 10000 in UTC"
        ) from exc
    if expires_at <= utcnow():
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail="expires_at must be in the future")


def _created(
    session: Session, user: Principal, key: str, stored: ApiKey, request: Request, *, role: str | None = None
) -> ApiKeyCreated:
    record(
        session,
        "api_key.created",
        actor=user,
        org_id=stored.org_id,
        target=stored.prefix,
        ip=client_address(request),
        owner=stored.user_id,
        role=role,
    )
    session.commit()
    return ApiKeyCreated(**ApiKeyOut.of(stored).model_dump(), key=key)
