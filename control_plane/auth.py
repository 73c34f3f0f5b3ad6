"""Who is calling: user API keys (stored as SHA-256 hashes) and per-execution tokens (HMAC-SHA256 signed)."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import jwt
from pydantic import BaseModel
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from control_plane.db.models import ApiKey, Organization, User, utcnow
from control_plane.settings import Settings

API_KEY_PREFIX = "bfk_"
_PREFIX_LENGTH = len(API_KEY_PREFIX) + 8
_TOKEN_ALGORITHM = "HS256"
_TOKEN_TYPE = "execution"
MIN_SECRET_KEY_BYTES = 32  # the HMAC-SHA256 key length RFC 7518 asks for

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
        _create_key_file(path)
    key = path.read_bytes().strip()
    if not key:
        raise RuntimeError(f"{path} is empty: delete it to have a new key generated, or set BIFROST_SECRET_KEY")
    return key


def _create_key_file(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return  # another process created it first; use theirs
    with os.fdopen(fd, "w") as key_file:
        key_file.write(secrets.token_urlsafe(48))


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
    """The user behind a request's API key."""

    user_id: str
    org_id: str | None
    email: str
    name: str | None
    is_platform_admin: bool


def generate_api_key() -> str:
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_api_key(session: Session, *, user: User, name: str, key: str | None = None) -> str:
    """Store a new API key for `user` (hashed) and return the key itself, which is never stored."""
    key = key or generate_api_key()
    session.add(
        ApiKey(prefix=key[:_PREFIX_LENGTH], key_hash=hash_api_key(key), name=name, user_id=user.id, org_id=user.org_id)
    )
    return key


def authenticate_api_key(session: Session, key: str) -> Principal | None:
    """The principal of a valid, unexpired, unrevoked key; None for anything else."""
    candidate_hash = hash_api_key(key)
    query = select(ApiKey, User).join(User, col(User.id) == col(ApiKey.user_id))
    rows = session.exec(query.where(ApiKey.prefix == key[:_PREFIX_LENGTH])).all()
    now = utcnow()
    for api_key, user in rows:
        if not hmac.compare_digest(api_key.key_hash, candidate_hash):
            continue
        if api_key.revoked_at is not None or (api_key.expires_at is not None and _aware(api_key.expires_at) <= now):
            return None
        return Principal(
            user_id=user.id,
            org_id=user.org_id,
            email=user.email,
            name=user.name,
            is_platform_admin=user.is_platform_admin,
        )
    return None


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
            key = create_api_key(session, user=admin, name="bootstrap", key=given)
            session.commit()
        except IntegrityError:
            return None  # another replica bootstrapped the same database at the same moment
    return None if given else key
