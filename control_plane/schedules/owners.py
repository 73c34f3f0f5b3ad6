"""Whom scheduled runs run as: one service account per organization (and one for the global schedules), made
when the scope's first schedule is, audited. It holds no API key and cannot sign in; its runs' `context.user`
names it."""

from __future__ import annotations

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from control_plane.db.models import Membership, OrgRole, User
from control_plane.security.audit import record

OWNER_NAME = "Scheduler"


def owner_email(org_id: str | None) -> str:
    return f"scheduler@{org_id or 'global'}.service.bifrost"


def schedule_owner(db: Engine, org_id: str | None) -> str:
    """The id of the service account the schedules of `org_id` (None: the global ones) run as; made, and audited,
    when it does not exist yet."""
    email = owner_email(org_id)
    with Session(db) as session:
        found = session.exec(select(User.id).where(User.email == email)).first()
        if found is not None:
            return found
        account = User(email=email, name=OWNER_NAME, org_id=org_id, is_service_account=True)
        try:
            # Flushed one by one: without ORM relationships the unit of work does not order by foreign key.
            session.add(account)
            session.flush()
            if org_id is not None:
                session.add(Membership(user_id=account.id, org_id=org_id, role=OrgRole.MEMBER.value))
            record(session, "schedule_owner.created", actor=None, org_id=org_id, target=email, actor_email="scheduler")
            session.commit()
        except IntegrityError:  # made by another replica meanwhile
            session.rollback()
            return session.exec(select(User.id).where(User.email == email)).one()
        return account.id
