"""The first start: the default organization and its platform admin, with an API key."""

from __future__ import annotations

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from control_plane.db.models import Membership, Organization, OrgRole, User
from control_plane.security.api_keys import issue_api_key
from control_plane.settings import Settings

DEFAULT_ORG_NAME = "Default"
ADMIN_EMAIL = "admin@bifrost.local"


def bootstrap(db_engine: Engine, settings: Settings) -> str | None:
    """On the first start, create the default organization and the admin user with an API key.

    Returns the admin key when it was generated here (the caller shows it once; only its hash is kept), None
    when the database was already bootstrapped or the key came from `BIFROST_BOOTSTRAP_API_KEY`.
    """
    given = settings.bootstrap_api_key.get_secret_value() if settings.bootstrap_api_key else None
    with Session(db_engine) as session:
        if session.exec(select(User).where(col(User.is_platform_admin))).first() is not None:
            return None
        org = Organization(name=DEFAULT_ORG_NAME)
        admin = User(email=ADMIN_EMAIL, name="Administrator", org_id=org.id, is_platform_admin=True)
        try:
            # Flushed one by one: without ORM relationships the unit of work does not order by foreign key.
            session.add(org)
            session.flush()
            session.add(admin)
            session.flush()
            session.add(Membership(user_id=admin.id, org_id=org.id, role=OrgRole.ORG_ADMIN.value))
            key, _ = issue_api_key(session, user=admin, name="bootstrap", key=given)
            session.commit()
        except IntegrityError:
            return None  # another replica bootstrapped the same database at the same moment
    return None if given else key
