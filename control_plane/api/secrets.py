"""Secrets over HTTP: names and metadata only; values go in, and come out only to running workflows."""

from __future__ import annotations

from datetime import datetime
from typing import cast

from fastapi import APIRouter, HTTPException, Request, Response, status
from pydantic import BaseModel, Field
from sqlalchemy import update
from sqlmodel import col, select

from control_plane.api.dependencies import (
    EntryNameParam,
    GlobalScopeQuery,
    OrgAdminDep,
    PlatformAdminDep,
    ServicesDep,
    client_address,
    write_scope,
)
from control_plane.db.models import Execution, Secret
from control_plane.db.session import session_scope
from control_plane.security.audit import record
from control_plane.security.encryption import SecretDecryptionError
from control_plane.security.scoped_values import EntryWrite, delete_entry, entries_visible_to_org, upsert_entry

router = APIRouter(prefix="/api/secrets", tags=["secrets"])


class SecretIn(BaseModel):
    value: str = Field(min_length=1, max_length=65536)


class SecretOut(BaseModel):
    """A secret without its value."""

    name: str
    org_id: str | None = Field(description="NULL: global, the fallback of every organization.")
    updated_at: datetime
    updated_by: str | None

    @classmethod
    def of(cls, secret: Secret) -> SecretOut:
        return cls(name=secret.name, org_id=secret.org_id, updated_at=secret.updated_at, updated_by=secret.updated_by)


class RotationOut(BaseModel):
    rotated: int = Field(description="How many secrets were re-encrypted with the newest key.")


@router.get("")
def list_secrets(services: ServicesDep, user: OrgAdminDep) -> list[SecretOut]:
    """The secrets of the organization acted for and the global ones; never their values."""
    with session_scope(services.db_engine) as session:
        return [SecretOut.of(secret) for secret in entries_visible_to_org(session, Secret, user.org_id)]


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
    ciphertext = services.cipher.encrypt(body.value)
    secret = upsert_entry(
        services.db_engine, Secret, name, {"ciphertext": ciphertext}, write=write, audit_prefix="secret"
    )
    return SecretOut.of(secret)


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
    with session_scope(services.db_engine) as session:
        secrets = session.exec(select(Secret)).all()
        sealed = session.exec(
            select(Execution.id, Execution.sealed_parameters).where(col(Execution.sealed_parameters).is_not(None))
        ).all()
        try:
            for secret in secrets:
                secret.ciphertext = services.cipher.rotate(secret.ciphertext)
                session.add(secret)
            for execution_id, ciphertext in sealed:
                # Compare and set: a run that finished meanwhile has dropped its sealed values for good.
                session.exec(
                    update(Execution)
                    .where(col(Execution.id) == execution_id, col(Execution.sealed_parameters) == ciphertext)
                    .values(sealed_parameters=services.cipher.rotate(cast(str, ciphertext)))
                )
        except SecretDecryptionError as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from exc
        record(session, "secret.keys_rotated", actor=user, org_id=None, ip=client_address(request), count=len(secrets))
        session.commit()
    return RotationOut(rotated=len(secrets))
