"""Config entries over HTTP: plain (unencrypted) JSON values per organization, with global fallback."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response, status
from pydantic import BaseModel, Field

from control_plane.api.dependencies import (
    EntryNameParam,
    GlobalScopeQuery,
    OrgAdminDep,
    ServicesDep,
    UserDep,
    client_address,
    write_scope,
)
from control_plane.db.models import ConfigEntry
from control_plane.db.session import session_scope
from control_plane.security.scoped_values import (
    EntryWrite,
    delete_entry,
    entries_visible_to_org,
    resolve_entry,
    upsert_entry,
)

router = APIRouter(prefix="/api/config", tags=["config"])


class ConfigIn(BaseModel):
    value: Any = Field(description="Any JSON value.")


class ConfigOut(BaseModel):
    name: str
    value: Any
    org_id: str | None = Field(description="NULL: global, the fallback of every organization.")
    updated_at: datetime

    @classmethod
    def of(cls, entry: ConfigEntry) -> ConfigOut:
        return cls(name=entry.name, value=entry.value, org_id=entry.org_id, updated_at=entry.updated_at)


@router.get("")
def list_config(services: ServicesDep, user: UserDep) -> list[ConfigOut]:
    """The entries of the organization acted for and the global ones."""
    with session_scope(services.db_engine) as session:
        return [ConfigOut.of(entry) for entry in entries_visible_to_org(session, ConfigEntry, user.org_id)]


@router.get("/{name}")
def get_config(name: EntryNameParam, services: ServicesDep, user: UserDep) -> ConfigOut:
    """The entry a workflow of the organization acted for reads: its own, else the global one."""
    with session_scope(services.db_engine) as session:
        entry = resolve_entry(session, ConfigEntry, user.org_id, name)
    if entry is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no config entry named {name!r}")
    return ConfigOut.of(entry)


@router.put("/{name}")
def put_config(
    name: EntryNameParam,
    body: ConfigIn,
    request: Request,
    services: ServicesDep,
    user: OrgAdminDep,
    global_scope: GlobalScopeQuery = False,
) -> ConfigOut:
    write = EntryWrite(write_scope(user, global_scope), user, client_address(request))
    entry = upsert_entry(
        services.db_engine, ConfigEntry, name, {"value": body.value}, write=write, audit_prefix="config"
    )
    return ConfigOut.of(entry)


@router.delete("/{name}", status_code=status.HTTP_204_NO_CONTENT)
def delete_config(
    name: EntryNameParam,
    request: Request,
    services: ServicesDep,
    user: OrgAdminDep,
    global_scope: GlobalScopeQuery = False,
) -> Response:
    write = EntryWrite(write_scope(user, global_scope), user, client_address(request))
    if not delete_entry(services.db_engine, ConfigEntry, name, write=write, audit_prefix="config"):
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no config entry named {name!r} here")
    return Response(status_code=status.HTTP_204_NO_CONTENT)
