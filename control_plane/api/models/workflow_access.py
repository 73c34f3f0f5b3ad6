"""Request and response bodies of workflow access rules."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from control_plane.db.models import OrgRole, WorkflowAccess


class AccessIn(BaseModel):
    roles: list[OrgRole] = Field(min_length=1, description="The roles that may start the workflow.")


class AccessOut(BaseModel):
    workflow_name: str
    roles: list[OrgRole] | None = Field(description="NULL: every signed-in user may start it.")
    updated_at: datetime | None = None

    @classmethod
    def of(cls, workflow_name: str, rule: WorkflowAccess | None) -> AccessOut:
        if rule is None:
            return cls(workflow_name=workflow_name, roles=None)
        roles = [OrgRole(role) for role in rule.roles]
        return cls(workflow_name=workflow_name, roles=roles, updated_at=rule.updated_at)
