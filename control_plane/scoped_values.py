"""Secrets and config entries: named values of one organization, or global ones every organization falls back to."""

from __future__ import annotations

from typing import TypeVar

from sqlalchemy import or_
from sqlmodel import Session, col, select

from control_plane.db.models import ConfigEntry, Secret

Entry = TypeVar("Entry", Secret, ConfigEntry)

NAME_PATTERN = r"^[A-Za-z0-9_.\-]{1,128}$"


def find_entry(session: Session, model: type[Entry], org_id: str | None, name: str) -> Entry | None:
    """The entry of exactly this scope (`org_id` None: the global one)."""
    scope = col(model.org_id).is_(None) if org_id is None else col(model.org_id) == org_id
    return session.exec(select(model).where(scope, model.name == name)).first()


def resolve_entry(session: Session, model: type[Entry], org_id: str | None, name: str) -> Entry | None:
    """What an execution of `org_id` reads: the org's own entry, else the global one."""
    own = find_entry(session, model, org_id, name) if org_id is not None else None
    return own or find_entry(session, model, None, name)


def entries_visible_to_org(session: Session, model: type[Entry], org_id: str | None) -> list[Entry]:
    """The org's entries and the global ones, by name."""
    scope = (
        col(model.org_id).is_(None) if org_id is None else or_(col(model.org_id).is_(None), col(model.org_id) == org_id)
    )
    return list(session.exec(select(model).where(scope).order_by(col(model.name), col(model.org_id))).all())
