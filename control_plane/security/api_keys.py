"""API keys: made random, stored only as SHA-256 hashes, personal or held by an organization's service account,
bound to one organization or not, revocable. A key is shown once, when it is made."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime, timedelta

from sqlalchemy import Engine, bindparam, update
from sqlalchemy import select as core_select
from sqlmodel import Session, col, select

from control_plane.db.models import ApiKey, Membership, Organization, OrgRole, User, as_utc, utcnow
from control_plane.db.session import session_scope
from control_plane.db.tables import API_KEYS, MEMBERSHIPS, USERS
from control_plane.errors import ForbiddenError, InvalidRequestError, NotFoundError
from control_plane.security.audit import record
from control_plane.security.principals import Principal, make_principal, roles_from

API_KEY_PREFIX = "bfk_"
_PREFIX_LENGTH = len(API_KEY_PREFIX) + 8
LAST_USED_RESOLUTION = timedelta(minutes=1)

# Every key with the prefix, with its user and the user's memberships: one row per membership (or one without).
# Read as plain rows, not ORM objects, and built once: this runs on every request made with a key.
_API_KEY_QUERY = (
    core_select(
        API_KEYS.c.id.label("key_id"),
        API_KEYS.c.key_hash,
        API_KEYS.c.org_id.label("key_org_id"),
        API_KEYS.c.revoked_at,
        API_KEYS.c.expires_at,
        API_KEYS.c.last_used_at,
        USERS.c.id.label("user_id"),
        USERS.c.org_id.label("home_org_id"),
        USERS.c.email,
        USERS.c.name,
        USERS.c.is_platform_admin,
        USERS.c.is_active,
        MEMBERSHIPS.c.org_id.label("member_org_id"),
        MEMBERSHIPS.c.role,
    )
    .select_from(
        API_KEYS.join(USERS, USERS.c.id == API_KEYS.c.user_id).outerjoin(
            MEMBERSHIPS, MEMBERSHIPS.c.user_id == USERS.c.id
        )
    )
    .where(API_KEYS.c.prefix == bindparam("prefix"))
)
_NOTE_KEY_USE = update(API_KEYS).where(API_KEYS.c.id == bindparam("key_id")).values(last_used_at=bindparam("now"))


def generate_api_key() -> str:
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def issue_api_key(
    session: Session,
    *,
    user: User,
    name: str,
    key: str | None = None,
    org_id: str | None = None,
    expires_at: datetime | None = None,
) -> tuple[str, ApiKey]:
    """Store a new API key for `user` (hashed); the key itself, which is never stored, and the stored row. A key
    with `org_id` acts only for that organization."""
    key = key or generate_api_key()
    row = ApiKey(
        prefix=key[:_PREFIX_LENGTH],
        key_hash=hash_api_key(key),
        name=name,
        user_id=user.id,
        org_id=org_id,
        expires_at=expires_at,
    )
    session.add(row)
    return key, row


def authenticate_api_key(session: Session, key: str) -> Principal | None:
    """The principal of a valid, unexpired, unrevoked key of an active user; None for anything else."""
    candidate_hash = hash_api_key(key)
    rows = session.connection().execute(_API_KEY_QUERY, {"prefix": key[:_PREFIX_LENGTH]}).mappings().all()
    matching = [row for row in rows if hmac.compare_digest(row["key_hash"], candidate_hash)]
    if not matching:
        return None
    key_row, now = matching[0], utcnow()
    if key_row["revoked_at"] is not None or (
        key_row["expires_at"] is not None and as_utc(key_row["expires_at"]) <= now
    ):
        return None
    if not key_row["is_active"]:
        return None
    memberships = ((row["member_org_id"], row["role"]) for row in matching if row["member_org_id"] is not None)
    principal = make_principal(
        user_id=key_row["user_id"],
        home_org_id=key_row["home_org_id"],
        email=key_row["email"],
        name=key_row["name"],
        is_platform_admin=key_row["is_platform_admin"],
        roles=roles_from(memberships, key_row["home_org_id"]),
        key_org_id=key_row["key_org_id"],
    )
    if key_row["key_org_id"] is not None and not principal.may_see_org(key_row["key_org_id"]):
        return None  # bound to an organization its user has since left
    _note_use(session, key_row["key_id"], key_row["last_used_at"], now)
    return principal


def _note_use(session: Session, key_id: str, last_used_at: datetime | None, now: datetime) -> None:
    # At most one write a minute per key: a busy key must not turn every read into a database write.
    if last_used_at is None or now - as_utc(last_used_at) > LAST_USED_RESOLUTION:
        session.connection().execute(_NOTE_KEY_USE, {"key_id": key_id, "now": now})
        session.commit()


def list_keys(db: Engine, caller: Principal) -> list[ApiKey]:
    """The caller's own keys, and for admins of the organization acted for its service keys."""
    with session_scope(db) as session:
        owned = col(ApiKey.user_id) == caller.user_id
        if caller.org_id is not None and caller.may_administer_org(caller.org_id):
            service_users = select(User.id).where(col(User.is_service_account), User.org_id == caller.org_id)
            owned = owned | col(ApiKey.user_id).in_(service_users)
        return list(session.exec(select(ApiKey).where(owned).order_by(col(ApiKey.created_at))).all())


def create_personal_key(
    db: Engine, caller: Principal, *, name: str, org_id: str | None, expires_at: datetime | None, ip: str
) -> tuple[str, ApiKey]:
    """A key of the caller's own, bound to `org_id` when given; the key and its stored row."""
    if caller.key_org_id is not None and org_id != caller.key_org_id:
        raise ForbiddenError("a key bound to an organization may only create keys bound to the same organization")
    with session_scope(db) as session:
        if org_id is not None and (not caller.may_see_org(org_id) or not session.get(Organization, org_id)):
            raise NotFoundError(f"no organization {org_id!r}")
        owner = session.get(User, caller.user_id)
        if owner is None:
            raise NotFoundError("your user no longer exists")
        key, stored = issue_api_key(session, user=owner, name=name, org_id=org_id, expires_at=expires_at)
        _record_created(session, caller, stored, ip)
        return key, stored


def create_service_key(
    db: Engine, caller: Principal, *, name: str, role: OrgRole, expires_at: datetime | None, ip: str
) -> tuple[str, ApiKey]:
    """A key of the organization acted for, held by a new service account with `role`, so that it keeps working
    when the admin who made it leaves; the key and its stored row."""
    with session_scope(db) as session:
        org = session.get(Organization, caller.org_id) if caller.org_id else None
        if org is None:
            raise InvalidRequestError("no organization selected for the service key")
        account = _create_service_account(session, org=org, name=name, role=role)
        key, stored = issue_api_key(session, user=account, name=name, org_id=org.id, expires_at=expires_at)
        _record_created(session, caller, stored, ip, role=role.value)
        return key, stored


def _create_service_account(session: Session, *, org: Organization, name: str, role: OrgRole) -> User:
    """A non-human user of one organization that holds its service keys; it cannot log in with a password."""
    account = User(
        email=f"service-{secrets.token_hex(6)}@{org.id}.service.bifrost",
        name=name,
        org_id=org.id,
        is_service_account=True,
    )
    session.add(account)
    session.flush()
    session.add(Membership(user_id=account.id, org_id=org.id, role=role.value))
    return account


def _record_created(session: Session, caller: Principal, stored: ApiKey, ip: str, *, role: str | None = None) -> None:
    record(
        session,
        "api_key.created",
        actor=caller,
        org_id=stored.org_id,
        target=stored.prefix,
        ip=ip,
        owner=stored.user_id,
        role=role,
    )
    session.commit()


def revoke_key(db: Engine, caller: Principal, key_id: str, *, ip: str) -> None:
    """Revoke a key: its owner, an admin of a service key's organization, or a platform admin may."""
    with session_scope(db) as session:
        key = session.get(ApiKey, key_id)
        owner = session.get(User, key.user_id) if key else None
        if key is None or owner is None or not _may_revoke(caller, key, owner):
            raise NotFoundError(f"no API key {key_id!r}")
        if key.revoked_at is None:
            key.revoked_at = utcnow()
            session.add(key)
            record(session, "api_key.revoked", actor=caller, org_id=key.org_id, target=key.prefix, ip=ip)
            session.commit()


def _may_revoke(caller: Principal, key: ApiKey, owner: User) -> bool:
    if caller.is_platform_admin or key.user_id == caller.user_id:
        return True
    return owner.is_service_account and caller.may_administer_org(key.org_id)


def create_admin_key(db: Engine, *, email: str | None, name: str, origin: str) -> tuple[str, ApiKey, str]:
    """A new key of an active platform admin, made on the control plane's host (`bifrost admin create-key`) when
    no admin key is left: the key, its stored row and the admin's email. `email` picks the admin when there are
    several; `origin` (who ran it, where) goes into the audit event."""
    with session_scope(db) as session:
        admins = list(
            session.exec(
                select(User)
                .where(col(User.is_platform_admin), col(User.is_active), col(User.is_service_account).is_(False))
                .order_by(col(User.email))
            ).all()
        )
        emails = ", ".join(admin.email for admin in admins)
        if email is not None:
            admins = [admin for admin in admins if admin.email == email.lower()]
            if not admins:
                raise NotFoundError(f"no active platform admin {email!r} (the platform admins: {emails or 'none'})")
        if not admins:
            raise NotFoundError(
                "no active platform admin in this database: is it Bifrost's, and has `bifrost serve` run on it once?"
            )
        if len(admins) > 1:
            raise InvalidRequestError(f"there are several platform admins: pick one with --email ({emails})")
        admin = admins[0]
        key, stored = issue_api_key(session, user=admin, name=name)
        session.flush()
        record(
            session,
            "api_key.created",
            actor=None,
            actor_email="bifrost admin create-key",
            org_id=None,
            target=stored.prefix,
            owner=admin.id,
            origin=origin,
        )
        session.commit()
        return key, stored, admin.email
