"""The audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel


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
