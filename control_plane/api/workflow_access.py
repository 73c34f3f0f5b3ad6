"""Restricting a workflow to organization roles, over HTTP. Platform admins set the rules."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, Response, status

from control_plane.api.dependencies import PlatformAdminDep, ServicesDep, UserDep, client_address
from control_plane.api.models.workflow_access import AccessIn, AccessOut
from control_plane.security.workflow_access import access_rule, lift_restriction, restrict

router = APIRouter(prefix="/api/workflows", tags=["workflows"])


@router.get("/{name}/access")
def get_access(name: str, services: ServicesDep, _user: UserDep) -> AccessOut:
    return AccessOut.of(name, access_rule(services.db_engine, name))


@router.put("/{name}/access")
def set_access(name: str, body: AccessIn, request: Request, services: ServicesDep, user: PlatformAdminDep) -> AccessOut:
    if services.registry.get(name) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no workflow named {name!r} in the workspace")
    roles = sorted({role.value for role in body.roles})
    return AccessOut.of(name, restrict(services.db_engine, user, name, roles, ip=client_address(request)))


@router.delete("/{name}/access", status_code=status.HTTP_204_NO_CONTENT)
def clear_access(name: str, request: Request, services: ServicesDep, user: PlatformAdminDep) -> Response:
    """Lift the restriction: every signed-in user may start the workflow again."""
    lift_restriction(services.db_engine, user, name, ip=client_address(request))
    return Response(status_code=status.HTTP_204_NO_CONTENT)
