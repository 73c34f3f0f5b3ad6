"""Request and response bodies of workflow access rules (defined in `bifrost.api`); here, how each is made."""

from __future__ import annotations

from bifrost.api import workflow_access as api
from bifrost.api.workflow_access import AccessIn
from control_plane.db.models import OrgRole, WorkflowAccess

__all__ = ["AccessIn", "AccessOut"]


class AccessOut(api.AccessOut):
    @classmethod
    def of(cls, workflow_name: str, rule: WorkflowAccess | None) -> AccessOut:
        if rule is None:
            return cls(workflow_name=workflow_name, roles=None)
        roles = [OrgRole(role) for role in rule.roles]
        return cls(workflow_name=workflow_name, roles=roles, updated_at=rule.updated_at)
