"""The audit log: who did what security-relevant thing, for which organization, from where."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from control_plane.db.models import AuditEvent
from control_plane.security.principals import Principal


def record(
    session: Session,
    action: str,
    *,
    actor: Principal | None,
    org_id: str | None,
    target: str | None = None,
    ip: str | None = None,
    actor_email: str | None = None,
    **detail: Any,
) -> None:
    """Add one audit event to the session's transaction, so it commits (or not) with the change it records."""
    session.add(
        AuditEvent(
            action=action,
            actor_user_id=actor.user_id if actor else None,
            actor_email=actor.email if actor else actor_email,
            org_id=org_id,
            target=target,
            ip=ip,
            detail=detail,
        )
    )
