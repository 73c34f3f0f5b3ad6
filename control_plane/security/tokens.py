"""Execution tokens: what a running workflow presents to the control plane, signed with HMAC-SHA256 and scoped
to its one execution, organization, user and deadline."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

import jwt
from pydantic import BaseModel

from control_plane.security.key_files import create_key_file
from control_plane.settings import Settings

_TOKEN_ALGORITHM = "HS256"
_TOKEN_TYPE = "execution"
MIN_SECRET_KEY_BYTES = 32  # the HMAC-SHA256 key length RFC 7518 asks for


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


class TokenIssuer:
    """Issues and verifies execution tokens with one key; what the engine and the runner routes share."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def issue(self, *, execution_id: str, org_id: str | None, user_id: str, expires_at: datetime) -> str:
        claims = {"typ": _TOKEN_TYPE, "exe": execution_id, "org": org_id, "sub": user_id, "exp": expires_at}
        return jwt.encode(claims, self._key, algorithm=_TOKEN_ALGORITHM)

    def verify(self, token: str) -> ExecutionClaims:
        """The claims of a valid token; raises `InvalidExecutionTokenError` saying why a token is not valid."""
        try:
            claims = jwt.decode(
                token, self._key, algorithms=[_TOKEN_ALGORITHM], options={"require": ["exp", "sub", "exe", "typ"]}
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
