"""Who is calling: a user by API key or by browser session, acting for the organization they ask for (or their
default one); and the user a running execution acts as."""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from sqlalchemy import Engine
from sqlmodel import Session

from control_plane.db.models import User
from control_plane.db.session import session_scope
from control_plane.errors import ForbiddenError, NotAuthenticatedError
from control_plane.security.api_keys import authenticate_api_key
from control_plane.security.logins import authenticate_session
from control_plane.security.principals import Principal, acting_for
from control_plane.security.tokens import ExecutionClaims

CSRF_HEADER = "X-CSRF-Token"
ORG_HEADER = "X-Bifrost-Org"


@dataclass(frozen=True)
class Credentials:
    """What a request presents to say who is calling."""

    api_key: str | None
    session_token: str | None
    org: str | None
    """The organization the caller asks to act for."""
    csrf_token: str | None = None
    """What a browser session sent as its CSRF token."""
    writes: bool = False
    """Whether the request changes something: a browser session must then send its CSRF token."""


def authenticate(db: Engine, credentials: Credentials) -> Principal:
    """The signed-in user, acting for the requested (or their default) organization. `NotAuthenticatedError`
    without valid credentials; `ForbiddenError` for a browser write without its CSRF token, or an organization
    the user may not act for; `NotFoundError` for an organization that does not exist."""
    with session_scope(db) as session:
        return authenticate_in(session, credentials)


def authenticate_in(session: Session, credentials: Credentials) -> Principal:
    """`authenticate`, within the caller's database session."""
    if credentials.api_key:
        principal = authenticate_api_key(session, credentials.api_key)
        if principal is None:
            raise NotAuthenticatedError("invalid API key (unknown, revoked or expired)")
    elif credentials.session_token:
        found = authenticate_session(session, credentials.session_token)
        if found is None:
            raise NotAuthenticatedError("your session has expired or was closed: log in again at /login")
        principal, ui_session = found
        if credentials.writes:
            _check_csrf(credentials.csrf_token, ui_session.csrf_token)
    else:
        raise NotAuthenticatedError(
            "missing API key: send `Authorization: Bearer <key>` or `X-Bifrost-Key: <key>`"
        )
    if credentials.org is None or credentials.org == principal.org_id:
        return principal
    return acting_for(session, principal, credentials.org)


def _check_csrf(sent: str | None, expected: str) -> None:
    if sent is None or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise ForbiddenError(f"missing or wrong {CSRF_HEADER} header: browser sessions must send it on every write")


def running_user(session: Session, claims: ExecutionClaims) -> User:
    """The user a running execution acts as (its token's); `NotAuthenticatedError` when the user is gone."""
    user = session.get(User, claims.user_id)
    if user is None:
        raise NotAuthenticatedError("the token's user no longer exists")
    return user
