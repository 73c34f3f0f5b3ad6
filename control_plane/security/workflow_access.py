"""Which callers may start which workflow: a workflow may be restricted to organization roles."""

from __future__ import annotations

from sqlmodel import Session

from control_plane.db.models import WorkflowAccess
from control_plane.security.principals import Principal


def may_start(session: Session, principal: Principal, workflow_name: str) -> bool:
    """Platform admins start anything; others need one of the workflow's roles in the org they act for."""
    if principal.is_platform_admin:
        return True
    rule = session.get(WorkflowAccess, workflow_name)
    if rule is None:
        return True
    role = principal.role_in(principal.org_id) if principal.org_id else None
    return role is not None and role.value in rule.roles
