"""The audit log: who did what security-relevant thing, for which organization, from where."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session, col, select

from control_plane.db.models import AuditEvent
from control_plane.db.session import session_scope
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


def read_events(
    db: Engine, *, org_id: str | None, all_orgs: bool, action: str | None, before: int | None, limit: int
) -> list[AuditEvent]:
    """Up to `limit` events, newest first: the organization's (`org_id` None: the global ones), or with
    `all_orgs` every event; only `action` ones when given, only those before the id `before` when given."""
    query = select(AuditEvent).order_by(col(AuditEvent.id).desc()).limit(limit)
    if not all_orgs:
        query = query.where(AuditEvent.org_id == org_id)
    if action is not None:
        query = query.where(AuditEvent.action == action)
    if before is not None:
        query = query.where(col(AuditEvent.id) < before)
    with session_scope(db) as session:
        return list(session.exec(query).all())
