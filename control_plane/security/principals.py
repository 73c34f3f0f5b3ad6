"""Who is calling: users by API key (stored as SHA-256 hashes), with their role per organization and the
organization they act for, and running workflows by per-execution token (HMAC-SHA256 signed)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import jwt
from pydantic import BaseModel
from sqlalchemy import Engine, Table, bindparam, update
from sqlalchemy import select as core_select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from control_plane.db.models import ApiKey, Membership, Organization, OrgRole, User, utcnow
from control_plane.security.key_files import create_key_file
from control_plane.settings import Settings

API_KEY_PREFIX = "bfk_"
_PREFIX_LENGTH = len(API_KEY_PREFIX) + 8
_TOKEN_ALGORITHM = "HS256"
_TOKEN_TYPE = "execution"
MIN_SECRET_KEY_BYTES = 32  # the HMAC-SHA256 key length RFC 7518 asks for
LAST_USED_RESOLUTION = timedelta(minutes=1)

DEFAULT_ORG_NAME = "Default"
ADMIN_EMAIL = "admin@bifrost.local"


class InvalidExecutionTokenError(Exception):
    """An execution token that is malformed, wrongly signed or expired."""


class ExecutionClaims(BaseModel):
    execution_id: str
    org_id: str | None
    user_id: str
    expires_at: datetime


def load_secret_key(settings: Settings) -> bytes:
    """The key that signs execution tokens: `BIFROST_SECRET_KEY`, else one kept in `data_dir/secret.key`."""
    if settings.secret_key is not None:
        configured = settings.secret_key.get_secret_value().encode()
        if len(configured) < MIN_SECRET_KEY_BYTES:
            raise ValueError(f"BIFROST_SECRET_KEY is too short: use at least {MIN_SECRET_KEY_BYTES} random characters")
        return configured
    path = settings.data_dir / "secret.key"
    if not path.exists():
        create_key_file(path, secrets.token_urlsafe(48).encode())
    key = path.read_bytes().strip()
    if not key:
        raise RuntimeError(f"{path} is empty: delete it to have a new key generated, or set BIFROST_SECRET_KEY")
    return key


def issue_execution_token(
    key: bytes, *, execution_id: str, org_id: str | None, user_id: str, expires_at: datetime
) -> str:
    claims = {"typ": _TOKEN_TYPE, "exe": execution_id, "org": org_id, "sub": user_id, "exp": expires_at}
    return jwt.encode(claims, key, algorithm=_TOKEN_ALGORITHM)


def verify_execution_token(key: bytes, token: str) -> ExecutionClaims:
    """The claims of a valid token; raises `InvalidExecutionTokenError` saying why a token is not valid."""
    try:
        claims = jwt.decode(
            token, key, algorithms=[_TOKEN_ALGORITHM], options={"require": ["exp", "sub", "exe", "typ"]}
        )
    except jwt.ExpiredSignatureError as exc:
        raise InvalidExecutionTokenError("execution token has expired") from exc
    except jwt.InvalidTokenError as exc:
        raise InvalidExecutionTokenError(f"invalid execution token: {exc}") from exc
    if claims["typ"] != _TOKEN_TYPE:
        raise InvalidExecutionTokenError(f"invalid execution token: wrong type {claims['typ']!r}")
    return ExecutionClaims(
        execution_id=claims["exe"],
        org_id=claims.get("org"),
        user_id=claims["sub"],
        expires_at=datetime.fromtimestamp(claims["exp"], UTC),
    )


class TokenIssuer:
    """Issues and verifies execution tokens with one key; what the engine and the runner routes share."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def issue(self, *, execution_id: str, org_id: str | None, user_id: str, expires_at: datetime) -> str:
        return issue_execution_token(
            self._key, execution_id=execution_id, org_id=org_id, user_id=user_id, expires_at=expires_at
        )

    def verify(self, token: str) -> ExecutionClaims:
        return verify_execution_token(self._key, token)


@dataclass(frozen=True)
class Principal:
    """Who is calling, and for which organization (`org_id`, the acting org) they act in this request."""

    user_id: str
    org_id: str | None
    email: str
    name: str | None
    is_platform_admin: bool
    roles: Mapping[str, OrgRole] = field(default_factory=dict, hash=False, compare=False)
    key_org_id: str | None = field(default=None, compare=False)
    session_id: str | None = field(default=None, compare=False)

    def role_in(self, org_id: str) -> OrgRole | None:
        return self.roles.get(org_id)

    def may_see_org(self, org_id: str | None) -> bool:
        """Platform admins see every org and the global scope; others only the orgs they belong to."""
        if self.is_platform_admin:
            return True
        return org_id is not None and org_id in self.roles and self.key_org_id in (None, org_id)

    def may_administer_org(self, org_id: str | None) -> bool:
        if self.is_platform_admin:
            return True
        return self.may_see_org(org_id) and org_id is not None and self.roles.get(org_id) is OrgRole.ORG_ADMIN


class OrgAccessError(Exception):
    """The caller asked to act for an organization they may not act for; `status` is the HTTP answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


# Built once: building a statement costs more than running it, and these run on every request.
_MEMBERSHIPS_QUERY = select(Membership).where(col(Membership.user_id) == bindparam("user_id"))
_API_KEYS: Table = ApiKey.__table__  # type: ignore[attr-defined]
_USERS: Table = User.__table__  # type: ignore[attr-defined]
_MEMBERSHIPS: Table = Membership.__table__  # type: ignore[attr-defined]
# Every key with the prefix, with its user and the user's memberships: one row per membership (or one without).
# Read as plain rows, not ORM objects: this runs on every request made with a key.
_API_KEY_QUERY = (
    core_select(
        _API_KEYS.c.id.label("key_id"),
        _API_KEYS.c.key_hash,
        _API_KEYS.c.org_id.label("key_org_id"),
        _API_KEYS.c.revoked_at,
        _API_KEYS.c.expires_at,
        _API_KEYS.c.last_used_at,
        _USERS.c.id.label("user_id"),
        _USERS.c.org_id.label("home_org_id"),
        _USERS.c.email,
        _USERS.c.name,
        _USERS.c.is_platform_admin,
        _USERS.c.is_active,
        _MEMBERSHIPS.c.org_id.label("member_org_id"),
        _MEMBERSHIPS.c.role,
    )
    .select_from(
        _API_KEYS.join(_USERS, _USERS.c.id == _API_KEYS.c.user_id).outerjoin(
            _MEMBERSHIPS, _MEMBERSHIPS.c.user_id == _USERS.c.id
        )
    )
    .where(_API_KEYS.c.prefix == bindparam("prefix"))
)
_NOTE_KEY_USE = update(_API_KEYS).where(_API_KEYS.c.id == bindparam("key_id")).values(last_used_at=bindparam("now"))


def roles_of(session: Session, user: User) -> dict[str, OrgRole]:
    """The user's role per organization. The user's home org (`User.org_id`) counts as membership."""
    memberships = session.exec(_MEMBERSHIPS_QUERY, params={"user_id": user.id}).all()
    return _roles(((membership.org_id, membership.role) for membership in memberships), user.org_id)


def _roles(memberships: Iterable[tuple[str, str]], home_org_id: str | None) -> dict[str, OrgRole]:
    """Role per organization from (org, role) memberships; the home org counts as membership."""
    roles = {org_id: OrgRole(role) for org_id, role in memberships}
    if home_org_id is not None:
        roles.setdefault(home_org_id, OrgRole.MEMBER)
    return roles


def principal_of(
    session: Session, user: User, *, key_org_id: str | None = None, session_id: str | None = None
) -> Principal:
    """The user as a caller, acting for the key's org, else their home org, else their only org."""
    return _principal(
        user_id=user.id,
        home_org_id=user.org_id,
        email=user.email,
        name=user.name,
        is_platform_admin=user.is_platform_admin,
        roles=roles_of(session, user),
        key_org_id=key_org_id,
        session_id=session_id,
    )


def _principal(
    *,
    user_id: str,
    home_org_id: str | None,
    email: str,
    name: str | None,
    is_platform_admin: bool,
    roles: dict[str, OrgRole],
    key_org_id: str | None = None,
    session_id: str | None = None,
) -> Principal:
    if key_org_id is not None:
        org_id: str | None = key_org_id
    elif home_org_id is not None:
        org_id = home_org_id
    else:
        org_id = next(iter(roles)) if len(roles) == 1 else None
    return Principal(
        user_id=user_id,
        org_id=org_id,
        email=email,
        name=name,
        is_platform_admin=is_platform_admin,
        roles=roles,
        key_org_id=key_org_id,
        session_id=session_id,
    )


def acting_for(session: Session, principal: Principal, org_id: str) -> Principal:
    """The principal acting for `org_id` (the `X-Bifrost-Org` header); `OrgAccessError` when not allowed."""
    if principal.key_org_id is not None and org_id != principal.key_org_id:
        raise OrgAccessError(403, f"this API key is bound to organization {principal.key_org_id!r}")
    if principal.is_platform_admin:
        if session.get(Organization, org_id) is None:
            raise OrgAccessError(404, f"no organization {org_id!r}")
    elif org_id not in principal.roles:
        raise OrgAccessError(403, f"you are not a member of organization {org_id!r}")
    return replace(principal, org_id=org_id)


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


def create_service_account(session: Session, *, org: Organization, name: str, role: OrgRole) -> User:
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


def authenticate_api_key(session: Session, key: str) -> Principal | None:
    """The principal of a valid, unexpired, unrevoked key of an active user; None for anything else."""
    candidate_hash = hash_api_key(key)
    rows = session.connection().execute(_API_KEY_QUERY, {"prefix": key[:_PREFIX_LENGTH]}).mappings().all()
    matching = [row for row in rows if hmac.compare_digest(row["key_hash"], candidate_hash)]
    if not matching:
        return None
    key_row, now = matching[0], utcnow()
    if key_row["revoked_at"] is not None or (
        key_row["expires_at"] is not None and _aware(key_row["expires_at"]) <= now
    ):
        return None
    if not key_row["is_active"]:
        return None
    memberships = ((row["member_org_id"], row["role"]) for row in matching if row["member_org_id"] is not None)
    roles = _roles(memberships, key_row["home_org_id"])
    principal = _principal(
        user_id=key_row["user_id"],
        home_org_id=key_row["home_org_id"],
        email=key_row["email"],
        name=key_row["name"],
        is_platform_admin=key_row["is_platform_admin"],
        roles=roles,
        key_org_id=key_row["key_org_id"],
    )
    if key_row["key_org_id"] is not None and not principal.may_see_org(key_row["key_org_id"]):
        return None  # bound to an organization its user has since left
    _note_use(session, key_row["key_id"], key_row["last_used_at"], now)
    return principal


def _note_use(session: Session, key_id: str, last_used_at: datetime | None, now: datetime) -> None:
    # At most one write a minute per key: a busy key must not turn every read into a database write.
    if last_used_at is None or now - _aware(last_used_at) > LAST_USED_RESOLUTION:
        session.connection().execute(_NOTE_KEY_USE, {"key_id": key_id, "now": now})
        session.commit()


def _aware(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; every timestamp Bifrost writes is UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


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
