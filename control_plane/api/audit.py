"""The audit log over HTTP: platform admins read all of it, org admins their organization's part."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel
from sqlmodel import col, select

from control_plane.api.dependencies import OrgAdminDep, ServicesDep
from control_plane.db.models import MAX_ROW_ID, AuditEvent
from control_plane.db.session import session_scope

router = APIRouter(prefix="/api/audit", tags=["audit"])

MAX_PAGE = 500


class AuditEventOut(BaseModel):
    id: int
    at: datetime
    action: str
    actor_user_id: str | None
    actor_email: str | None
    org_id: str | None
    target: str | None
    ip: str | None
    detail: dict[str, Any]


class AuditPage(BaseModel):
    events: list[AuditEventOut]
    next_before: int | None = None


@router.get("")
def list_audit_events(
    services: ServicesDep,
    user: OrgAdminDep,
    action: Annotated[str | None, Query(max_length=100, description="Only this action, e.g. `login.failed`.")] = None,
    all_orgs: Annotated[
        bool,
        Query(description="Platform admins: every organization and the global events, not just the one acted for."),
    ] = False,
    before: Annotated[
        int | None, Query(ge=1, le=MAX_ROW_ID, description="The next_before of the previous page.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
) -> AuditPage:
    """Newest first."""
    query = select(AuditEvent).order_by(col(AuditEvent.id).desc()).limit(limit + 1)
    if not (all_orgs and user.is_platform_admin):
        query = query.where(AuditEvent.org_id == user.org_id)
    if action is not None:
        query = query.where(AuditEvent.action == action)
    if before is not None:
        query = query.where(col(AuditEvent.id) < before)
    with session_scope(services.db_engine) as session:
        rows = session.exec(query).all()
    page = [AuditEventOut.model_validate(row, from_attributes=True) for row in rows[:limit]]
    return AuditPage(events=page, next_before=page[-1].id if len(rows) > limit else None)
