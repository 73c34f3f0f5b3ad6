"""Restricting a workflow to organization roles, over HTTP. Platform admins set the rules."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, HTTPException, Request, Response, status
from pydantic import BaseModel, Field

from control_plane.api.dependencies import PlatformAdminDep, ServicesDep, UserDep, client_address
from control_plane.db.models import OrgRole, WorkflowAccess, utcnow
from control_plane.db.session import session_scope
from control_plane.security.audit import record

router = APIRouter(prefix="/api/workflows", tags=["workflows"])


class AccessIn(BaseModel):
    roles: list[OrgRole] = Field(min_length=1, description="The roles that may start the workflow.")


class AccessOut(BaseModel):
    workflow_name: str
    roles: list[OrgRole] | None = Field(description="NULL: every signed-in user may start it.")
    updated_at: datetime | None = None


@router.get("/{name}/access")
def get_access(name: str, services: ServicesDep, _user: UserDep) -> AccessOut:
    with session_scope(services.db_engine) as session:
        rule = session.get(WorkflowAccess, name)
    if rule is None:
        return AccessOut(workflow_name=name, roles=None)
    return AccessOut(workflow_name=name, roles=[OrgRole(role) for role in rule.roles], updated_at=rule.updated_at)


@router.put("/{name}/access")
def set_access(name: str, body: AccessIn, request: Request, services: ServicesDep, user: PlatformAdminDep) -> AccessOut:
    if services.registry.get(name) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no workflow named {name!r} in the workspace")
    roles = sorted({role.value for role in body.roles})
    with session_scope(services.db_engine) as session:
        rule = session.get(WorkflowAccess, name) or WorkflowAccess(workflow_name=name, roles=roles)
        rule.roles = roles
        rule.updated_by = user.user_id
        rule.updated_at = utcnow()
        session.add(rule)
        record(
            session,
            "workflow_access.changed",
            actor=user,
            org_id=None,
            target=name,
            ip=client_address(request),
            roles=roles,
        )
        session.commit()
        return AccessOut(workflow_name=name, roles=[OrgRole(role) for role in roles], updated_at=rule.updated_at)


@router.delete("/{name}/access", status_code=status.HTTP_204_NO_CONTENT)
def clear_access(name: str, request: Request, services: ServicesDep, user: PlatformAdminDep) -> Response:
    """Lift the restriction: every signed-in user may start the workflow again."""
    with session_scope(services.db_engine) as session:
        rule = session.get(WorkflowAccess, name)
        if rule is not None:
            session.delete(rule)
            record(session, "workflow_access.cleared", actor=user, org_id=None, target=name, ip=client_address(request))
            session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)
