"""Restricting a workflow to organization roles."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from bifrost.api.orgs import OrgRole


class AccessIn(BaseModel):
    roles: list[OrgRole] = Field(min_length=1, description="The roles that may start the workflow.")


class AccessOut(BaseModel):
    workflow_name: str
    roles: list[OrgRole] | None = Field(description="NULL: every signed-in user may start it.")
    updated_at: datetime | None = None
