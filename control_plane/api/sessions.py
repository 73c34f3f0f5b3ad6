"""Browser sign-in: the login form, sign-in and sign-out for the web UI, logout, and the current session (with
the CSRF token writes must send)."""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass, field
from datetime import timedelta
from html import escape
from typing import Annotated

from fastapi import APIRouter, Cookie, Form, Header, HTTPException, Request, status
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, Field

from control_plane.api.dependencies import (
    SESSION_COOKIE,
    Services,
    ServicesDep,
    UserDep,
    client_address,
    forbidden,
)
from control_plane.audit import record
from control_plane.db.models import UiSession
from control_plane.db.session import session_scope
from control_plane.logins import LoginThrottle, authenticate_session, check_password, close_session, open_session

router = APIRouter(tags=["sessions"])

LOGIN_CSRF_COOKIE = "bifrost_login_csrf"
REQUESTED_WITH_HEADER = "X-Requested-With"
FormField = Annotated[str, Form(max_length=1024)]


class SignInIn(BaseModel):
    email: str = Field(max_length=1024)
    password: str = Field(max_length=1024)


class SessionOut(BaseModel):
    user_id: str
    email: str
    org_id: str | None
    is_platform_admin: bool
    csrf_token: str | None = Field(None, description="Browser sessions: send it as `X-CSRF-Token` on every write.")


@router.get("/login", response_class=HTMLResponse)
def login_page(
    services: ServicesDep, session_token: Annotated[str | None, Cookie(alias=SESSION_COOKIE)] = None
) -> HTMLResponse:
    """The sign-in form, or, when signed in, who you are and a sign-out button."""
    signed_in = _session(services, session_token)
    if signed_in is not None:
        email, csrf_token = signed_in
        body = (
            f"<p>Signed in as <strong>{escape(email)}</strong>.</p>"
            '<form method="post" action="/logout">'
            f'<input type="hidden" name="csrf_token" value="{escape(csrf_token)}">'
            '<button type="submit">Sign out</button></form>'
        )
        return _page(body, status.HTTP_200_OK)
    return _login_form(None, status.HTTP_200_OK)


@router.post("/login", response_class=HTMLResponse)
def login(
    request: Request,
    services: ServicesDep,
    email: FormField,
    password: FormField,
    csrf_token: FormField,
    csrf_cookie: Annotated[str | None, Cookie(alias=LOGIN_CSRF_COOKIE)] = None,
) -> Response:
    """Check the password and open a session: an HttpOnly, SameSite cookie. Failed attempts are rate-limited
    per email and per client address."""
    if csrf_cookie is None or not hmac.compare_digest(csrf_cookie.encode(), csrf_token.encode()):
        raise forbidden("the login form expired or did not come from this site: reload /login and try again")
    outcome = _sign_in(request, services, email, password)
    if isinstance(outcome, _Refusal):
        response = _login_form(outcome.message, outcome.status_code)
        response.headers.update(outcome.headers)
        return response
    signed_in = RedirectResponse("/login", status_code=status.HTTP_303_SEE_OTHER)
    _set_session_cookie(signed_in, request, outcome)
    signed_in.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return signed_in


@router.post(
    "/api/session",
    response_model=SessionOut,
    responses={
        401: {"description": "Wrong email or password."},
        403: {"description": f"No `{REQUESTED_WITH_HEADER}` header."},
        429: {"description": "Too many failed sign-ins; `Retry-After` says when to try again."},
    },
)
def sign_in(
    body: SignInIn,
    request: Request,
    services: ServicesDep,
    requested_with: Annotated[str | None, Header(alias=REQUESTED_WITH_HEADER)] = None,
) -> Response:
    """Sign in from a script of this site (the web UI): the same check and rate limit as the /login form, the
    session as the same HttpOnly, SameSite cookie, and the CSRF token its writes must send. The request must
    carry an `X-Requested-With` header: a page of another site cannot send one without this site's consent, so
    it cannot sign a visitor in to an account of its choosing."""
    if not requested_with:
        raise forbidden(
            f"send the {REQUESTED_WITH_HEADER} header: sign-ins from scripts must show they come from this site"
        )
    outcome = _sign_in(request, services, body.email, body.password)
    if isinstance(outcome, _Refusal):
        raise HTTPException(outcome.status_code, detail=outcome.message, headers=outcome.headers or None)
    response = JSONResponse(outcome.session.model_dump(mode="json"), headers={"Cache-Control": "no-store"})
    _set_session_cookie(response, request, outcome)
    return response


@router.delete("/api/session", status_code=status.HTTP_204_NO_CONTENT)
def sign_out(request: Request, services: ServicesDep, user: UserDep) -> Response:
    """Close the browser session the request comes with; like every write with a session, it must carry the
    session's `X-CSRF-Token`."""
    if user.session_id is None:
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST,
            detail="not a browser session: an API key is revoked with DELETE /api/keys/{id}",
        )
    with session_scope(services.db_engine) as session:
        close_session(session, user.session_id)
        record(session, "logout", actor=user, org_id=None, ip=client_address(request))
        session.commit()
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    response.delete_cookie(SESSION_COOKIE)
    return response


@router.post("/logout")
def logout(
    request: Request,
    services: ServicesDep,
    csrf_token: FormField,
    session_token: Annotated[str | None, Cookie(alias=SESSION_COOKIE)] = None,
) -> Response:
    """Close the browser session; the form must carry the session's CSRF token."""
    with session_scope(services.db_engine) as session:
        found = authenticate_session(session, session_token) if session_token else None
        if found is None:
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail="not signed in")
        principal, ui_session = found
        if not hmac.compare_digest(csrf_token.encode(), ui_session.csrf_token.encode()):
            raise forbidden("wrong csrf_token: sign out from the /login page")
        close_session(session, ui_session.id)
        record(session, "logout", actor=principal, org_id=None, ip=client_address(request))
        session.commit()
    response = RedirectResponse("/login", status_code=status.HTTP_303_SEE_OTHER)
    response.delete_cookie(SESSION_COOKIE)
    return response


@router.get("/api/session")
def current_session(services: ServicesDep, user: UserDep) -> SessionOut:
    """Who is calling; for a browser session also its CSRF token."""
    csrf_token = None
    if user.session_id is not None:
        with session_scope(services.db_engine) as session:
            found = session.get(UiSession, user.session_id)
            csrf_token = found.csrf_token if found else None
    return SessionOut(
        user_id=user.user_id,
        email=user.email,
        org_id=user.org_id,
        is_platform_admin=user.is_platform_admin,
        csrf_token=csrf_token,
    )


@dataclass(frozen=True)
class _SignedIn:
    token: str
    lifetime: timedelta
    session: SessionOut


@dataclass(frozen=True)
class _Refusal:
    status_code: int
    message: str
    headers: dict[str, str] = field(default_factory=dict)


def _sign_in(request: Request, services: Services, email: str, password: str) -> _SignedIn | _Refusal:
    """Check a password, with the rate limit on failures, and open a session; every outcome is audited."""
    email = email.strip().lower()
    ip = client_address(request)
    throttle = LoginThrottle.from_settings(services.settings)
    with session_scope(services.db_engine) as session:
        wait = throttle.retry_after(session, email, ip)
        if wait is not None:
            record(session, "login.rate_limited", actor=None, actor_email=email, org_id=None, ip=ip)
            session.commit()
            return _Refusal(
                status.HTTP_429_TOO_MANY_REQUESTS,
                f"Too many failed sign-ins. Try again in {wait} seconds.",
                {"Retry-After": str(wait)},
            )
        user = check_password(session, email, password)
        if user is None:
            throttle.record_failure(session, email, ip)
            record(session, "login.failed", actor=None, actor_email=email, org_id=None, ip=ip)
            session.commit()
            return _Refusal(status.HTTP_401_UNAUTHORIZED, "Wrong email or password.")
        throttle.clear(session, email)
        lifetime = timedelta(hours=services.settings.session_hours)
        token, ui_session = open_session(session, user, lifetime)
        record(session, "login.succeeded", actor=None, actor_email=email, org_id=user.org_id, ip=ip, user_id=user.id)
        session.commit()
        signed_in = SessionOut(
            user_id=user.id,
            email=user.email,
            org_id=user.org_id,
            is_platform_admin=user.is_platform_admin,
            csrf_token=ui_session.csrf_token,
        )
    return _SignedIn(token, lifetime, signed_in)


def _set_session_cookie(response: Response, request: Request, signed_in: _SignedIn) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        signed_in.token,
        max_age=int(signed_in.lifetime.total_seconds()),
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )


def _session(services: Services, token: str | None) -> tuple[str, str] | None:
    if not token:
        return None
    with session_scope(services.db_engine) as session:
        found = authenticate_session(session, token)
    return (found[0].email, found[1].csrf_token) if found else None


def _login_form(error: str | None, status_code: int) -> HTMLResponse:
    csrf_token = secrets.token_urlsafe(32)
    message = f'<p role="alert">{escape(error)}</p>' if error else ""
    body = (
        f"{message}"
        '<form method="post" action="/login">'
        f'<input type="hidden" name="csrf_token" value="{csrf_token}">'
        '<label>Email <input name="email" type="email" autocomplete="username" required></label>'
        '<label>Password <input name="password" type="password" autocomplete="current-password" required></label>'
        '<button type="submit">Sign in</button></form>'
    )
    response = _page(body, status_code)
    response.set_cookie(LOGIN_CSRF_COOKIE, csrf_token, httponly=True, samesite="strict", path="/login")
    return response


def _page(body: str, status_code: int) -> HTMLResponse:
    return HTMLResponse(
        "<!doctype html><html><head><meta charset='utf-8'><title>Bifrost sign-in</title></head>"
        f"<body><h1>Bifrost</h1>{body}</body></html>",
        status_code=status_code,
        headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY"},
    )
