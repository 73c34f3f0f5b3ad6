"""The audit log over HTTP: platform admins read all of it, org admins their organization's part."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from control_plane.api.dependencies import OrgAdminDep, ServicesDep
from control_plane.api.models.audit import AuditEventOut, AuditPage
from control_plane.db.models import MAX_ROW_ID
from control_plane.security.audit import read_events

router = APIRouter(prefix="/api/audit", tags=["audit"])

MAX_PAGE = 500


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
    rows = read_events(
        services.db_engine,
        org_id=user.org_id,
        all_orgs=all_orgs and user.is_platform_admin,
        action=action,
        before=before,
        limit=limit + 1,
    )
    page = [AuditEventOut.model_validate(row, from_attributes=True) for row in rows[:limit]]
    return AuditPage(events=page, next_before=page[-1].id if len(rows) > limit else None)
