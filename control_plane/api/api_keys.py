"""API keys over HTTP: personal keys, service keys of an organization, revocation. A key is shown only once."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, HTTPException, Request, Response, status

from control_plane.api.dependencies import OrgAdminDep, ServicesDep, UserDep, client_address
from control_plane.api.models.api_keys import ApiKeyCreated, ApiKeyIn, ApiKeyOut, ServiceKeyIn
from control_plane.db.models import utcnow
from control_plane.security import api_keys

router = APIRouter(prefix="/api/keys", tags=["api keys"])


@router.get("")
def list_keys(services: ServicesDep, user: UserDep) -> list[ApiKeyOut]:
    """The caller's own keys, and for admins of the organization acted for its service keys."""
    return [ApiKeyOut.of(key) for key in api_keys.list_keys(services.db_engine, user)]


@router.post("", status_code=status.HTTP_201_CREATED)
def create_key(body: ApiKeyIn, request: Request, services: ServicesDep, user: UserDep) -> ApiKeyCreated:
    """A personal key of the caller."""
    _check_expiry(body.expires_at)
    key, stored = api_keys.create_personal_key(
        services.db_engine,
        user,
        name=body.name,
        org_id=body.org_id,
        expires_at=body.expires_at,
        ip=client_address(request),
    )
    return ApiKeyCreated.of_new(key, stored)


@router.post("/service", status_code=status.HTTP_201_CREATED)
def create_service_key(body: ServiceKeyIn, request: Request, services: ServicesDep, user: OrgAdminDep) -> ApiKeyCreated:
    """A key of the organization acted for, held by a new service account with `role`; it keeps working when
    the admin who made it leaves."""
    _check_expiry(body.expires_at)
    key, stored = api_keys.create_service_key(
        services.db_engine, user, name=body.name, role=body.role, expires_at=body.expires_at, ip=client_address(request)
    )
    return ApiKeyCreated.of_new(key, stored)


@router.delete("/{key_id}", status_code=status.HTTP_204_NO_CONTENT)
def revoke_key(key_id: str, request: Request, services: ServicesDep, user: UserDep) -> Response:
    """Revoke a key: the owner, an admin of a service key's organization, or a platform admin."""
    api_keys.revoke_key(services.db_engine, user, key_id, ip=client_address(request))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


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
