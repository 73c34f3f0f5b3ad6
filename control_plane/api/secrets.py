"""Secrets over HTTP: names and metadata only; values go in, and come out only to running workflows."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, Response, status

from control_plane.api.dependencies import (
    EntryNameParam,
    GlobalScopeQuery,
    OrgAdminDep,
    PlatformAdminDep,
    ServicesDep,
    client_address,
    write_scope,
)
from control_plane.api.models.secrets import RotationOut, SecretIn, SecretOut
from control_plane.db.models import Secret
from control_plane.security.key_rotation import rotate_encryption_keys
from control_plane.security.scoped_values import EntryWrite, delete_entry, store_secret, visible_entries

router = APIRouter(prefix="/api/secrets", tags=["secrets"])


@router.get("")
def list_secrets(services: ServicesDep, user: OrgAdminDep) -> list[SecretOut]:
    """The secrets of the organization acted for and the global ones; never their values."""
    return [SecretOut.of(secret) for secret in visible_entries(services.db_engine, Secret, user.org_id)]


@router.put("/{name}")
def put_secret(
    name: EntryNameParam,
    body: SecretIn,
    request: Request,
    services: ServicesDep,
    user: OrgAdminDep,
    global_scope: GlobalScopeQuery = False,
) -> SecretOut:
    """Create or replace a secret of the organization acted for (or, `global=true`, a global one)."""
    write = EntryWrite(write_scope(user, global_scope), user, client_address(request))
    return SecretOut.of(store_secret(services.db_engine, services.cipher, name, body.value, write=write))


@router.delete("/{name}", status_code=status.HTTP_204_NO_CONTENT)
def delete_secret(
    name: EntryNameParam,
    request: Request,
    services: ServicesDep,
    user: OrgAdminDep,
    global_scope: GlobalScopeQuery = False,
) -> Response:
    write = EntryWrite(write_scope(user, global_scope), user, client_address(request))
    if not delete_entry(services.db_engine, Secret, name, write=write, audit_prefix="secret"):
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no secret named {name!r} here")
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/rotate")
def rotate_secrets(request: Request, services: ServicesDep, user: PlatformAdminDep) -> RotationOut:
    """Re-encrypt every secret with the newest key of `BIFROST_ENCRYPTION_KEYS`, and the secret values passed to
    the sub-workflows that have yet to run; afterwards the older keys may be removed."""
    rotated = rotate_encryption_keys(services.db_engine, services.cipher, user, ip=client_address(request))
    return RotationOut(rotated=rotated)
