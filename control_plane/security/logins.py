"""Browser logins: argon2 passwords, failed-login rate limiting, and sessions kept as hashed cookie tokens."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Engine, func
from sqlmodel import Session, col, select

from bifrost.api.users import MIN_PASSWORD_LENGTH
from control_plane.db.models import LoginFailure, UiSession, User, as_utc, utcnow
from control_plane.db.session import session_scope
from control_plane.errors import ForbiddenError, InvalidRequestError, NotAuthenticatedError
from control_plane.security.audit import record
from control_plane.security.principals import Principal, principal_of
from control_plane.settings import Settings

_hasher = PasswordHasher()
# Verified against when the email is unknown, so a wrong email costs as much time as a wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))
# A client address may fail this many times more than one email: a shared NAT serves many people.
_IP_FAILURE_FACTOR = 4


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"password too short: use at least {MIN_PASSWORD_LENGTH} characters")
    return _hasher.hash(password)


def check_password(session: Session, email: str, password: str) -> User | None:
    """The active, password-enabled user with this email and password; None otherwise."""
    user = session.exec(select(User).where(User.email == email)).first()
    stored = user.password_hash if user is not None and user.password_hash else _DUMMY_HASH
    try:
        _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return None
    if user is None or not user.is_active or user.password_hash is None:
        return None
    if _hasher.check_needs_rehash(stored):
        user.password_hash = _hasher.hash(password)
        session.add(user)
    return user


@dataclass(frozen=True)
class LoginThrottle:
    max_failures: int
    window: timedelta

    @classmethod
    def from_settings(cls, settings: Settings) -> LoginThrottle:
        return cls(settings.login_max_failures, timedelta(seconds=settings.login_failure_window_seconds))

    def retry_after(self, session: Session, email: str, ip: str) -> int | None:
        """Seconds until a login for `email` from `ip` may be tried again; None when it may be tried now."""
        since = utcnow() - self.window
        recent = select(func.count(), func.min(LoginFailure.at)).where(col(LoginFailure.at) >= since)
        by_email = session.exec(recent.where(LoginFailure.email == email)).one()
        by_ip = session.exec(recent.where(LoginFailure.ip == ip)).one()
        blocking = [
            first
            for (count, first), limit in (
                (by_email, self.max_failures),
                (by_ip, self.max_failures * _IP_FAILURE_FACTOR),
            )
            if count >= limit and first is not None
        ]
        if not blocking:
            return None
        free_at = min(as_utc(first) for first in blocking) + self.window
        return max(1, int((free_at - utcnow()).total_seconds()) + 1)

    def record_failure(self, session: Session, email: str, ip: str) -> None:
        session.add(LoginFailure(email=email, ip=ip))
        expired = select(LoginFailure).where(col(LoginFailure.at) < utcnow() - self.window)
        for old in session.exec(expired.limit(100)).all():
            session.delete(old)

    def clear(self, session: Session, email: str) -> None:
        for failure in session.exec(select(LoginFailure).where(LoginFailure.email == email)).all():
            session.delete(failure)


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def open_session(session: Session, user: User, lifetime: timedelta) -> tuple[str, UiSession]:
    """A new browser session; returns the cookie token (never stored) and the session row."""
    token = secrets.token_urlsafe(32)
    ui_session = UiSession(
        token_hash=_token_hash(token),
        csrf_token=secrets.token_urlsafe(32),
        user_id=user.id,
        expires_at=utcnow() + lifetime,
    )
    session.add(ui_session)
    return token, ui_session


def authenticate_session(session: Session, token: str) -> tuple[Principal, UiSession] | None:
    """The principal of a live session cookie; None for an unknown, expired or closed one."""
    row = session.exec(
        select(UiSession, User)
        .join(User, col(User.id) == col(UiSession.user_id))
        .where(UiSession.token_hash == _token_hash(token))
    ).first()
    if row is None:
        return None
    ui_session, user = row
    if ui_session.revoked_at is not None or as_utc(ui_session.expires_at) <= utcnow() or not user.is_active:
        return None
    return principal_of(session, user, session_id=ui_session.id), ui_session


def close_session(session: Session, session_id: str) -> None:
    ui_session = session.get(UiSession, session_id)
    if ui_session is not None and ui_session.revoked_at is None:
        ui_session.revoked_at = utcnow()
        session.add(ui_session)


def close_sessions_of(session: Session, user_id: str) -> None:
    """Log a user out everywhere (after a password change or deactivation)."""
    open_ones = select(UiSession).where(UiSession.user_id == user_id, col(UiSession.revoked_at).is_(None))
    for ui_session in session.exec(open_ones).all():
        ui_session.revoked_at = utcnow()
        session.add(ui_session)


class LoginThrottledError(Exception):
    """Too many failed sign-ins for the email or from the address lately."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"Too many failed sign-ins. Try again in {retry_after} seconds.")
        self.retry_after = retry_after
        """Seconds until a sign-in may be tried again."""


class WrongPasswordError(Exception):
    """No active user with a password has this email and password."""

    def __init__(self) -> None:
        super().__init__("Wrong email or password.")


def sign_in(
    db: Engine, throttle: LoginThrottle, email: str, password: str, *, ip: str, lifetime: timedelta
) -> str:
    """Check the password and open a session; the session's cookie token. Every attempt is audited; a failed
    one counts towards the throttle (`WrongPasswordError`), and while it holds, none is checked
    (`LoginThrottledError`)."""
    with session_scope(db) as session:
        wait = throttle.retry_after(session, email, ip)
        if wait is not None:
            record(session, "login.rate_limited", actor=None, actor_email=email, org_id=None, ip=ip)
            session.commit()
            raise LoginThrottledError(wait)
        user = check_password(session, email, password)
        if user is None:
            throttle.record_failure(session, email, ip)
            record(session, "login.failed", actor=None, actor_email=email, org_id=None, ip=ip)
            session.commit()
            raise WrongPasswordError
        throttle.clear(session, email)
        token, _ = open_session(session, user, lifetime)
        record(session, "login.succeeded", actor=None, actor_email=email, org_id=user.org_id, ip=ip, user_id=user.id)
        session.commit()
    return token


def sign_out(db: Engine, token: str | None, csrf_token: str, *, ip: str) -> None:
    """Close the browser session of the cookie `token`, which must come with the session's CSRF token."""
    with session_scope(db) as session:
        found = authenticate_session(session, token) if token else None
        if found is None:
            raise NotAuthenticatedError("not signed in")
        principal, ui_session = found
        if not hmac.compare_digest(csrf_token.encode(), ui_session.csrf_token.encode()):
            raise ForbiddenError("wrong csrf_token: sign out from the /login page")
        close_session(session, ui_session.id)
        record(session, "logout", actor=principal, org_id=None, ip=ip)
        session.commit()


def close_browser_session(db: Engine, principal: Principal, *, ip: str) -> None:
    """Close the browser session `principal` came with (the CSRF token was checked with the request)."""
    if principal.session_id is None:
        raise InvalidRequestError("not a browser session: an API key is revoked with DELETE /api/keys/{id}")
    with session_scope(db) as session:
        close_session(session, principal.session_id)
        record(session, "logout", actor=principal, org_id=None, ip=ip)
        session.commit()


def signed_in(db: Engine, token: str) -> tuple[Principal, UiSession] | None:
    """`authenticate_session` in a transaction of its own."""
    with session_scope(db) as session:
        return authenticate_session(session, token)


def csrf_token_of(db: Engine, session_id: str) -> str | None:
    """The CSRF token of the browser session; None when it is gone."""
    with session_scope(db) as session:
        found = session.get(UiSession, session_id)
        return found.csrf_token if found else None
