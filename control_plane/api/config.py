"""Config entries over HTTP: plain (unencrypted) JSON values per organization, with global fallback."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, Response, status

from control_plane.api.dependencies import (
    EntryNameParam,
    GlobalScopeQuery,
    OrgAdminDep,
    ServicesDep,
    UserDep,
    client_address,
    write_scope,
)
from control_plane.api.models.config import ConfigIn, ConfigOut
from control_plane.db.models import ConfigEntry
from control_plane.security.scoped_values import EntryWrite, delete_entry, entry_of_org, upsert_entry, visible_entries

router = APIRouter(prefix="/api/config", tags=["config"])


@router.get("")
def list_config(services: ServicesDep, user: UserDep) -> list[ConfigOut]:
    """The entries of the organization acted for and the global ones."""
    return [ConfigOut.of(entry) for entry in visible_entries(services.db_engine, ConfigEntry, user.org_id)]


@router.get("/{name}")
def get_config(name: EntryNameParam, services: ServicesDep, user: UserDep) -> ConfigOut:
    """The entry a workflow of the organization acted for reads: its own, else the global one."""
    entry = entry_of_org(services.db_engine, ConfigEntry, user.org_id, name)
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
