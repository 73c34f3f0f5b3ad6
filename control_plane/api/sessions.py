"""Browser sign-in: the login form, sign-in and sign-out for the web UI, logout, and the current session (with
the CSRF token writes must send)."""

from __future__ import annotations

import hmac
import secrets
from datetime import timedelta
from html import escape
from typing import Annotated

from fastapi import APIRouter, Cookie, Form, Header, HTTPException, Request, status
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from control_plane.api.dependencies import (
    SESSION_COOKIE,
    Services,
    ServicesDep,
    UserDep,
    client_address,
    forbidden,
)
from control_plane.api.models.sessions import SessionOut, SignInIn
from control_plane.security.logins import (
    LoginThrottle,
    LoginThrottledError,
    WrongPasswordError,
    close_browser_session,
    csrf_token_of,
    sign_in,
    sign_out,
    signed_in,
)

router = APIRouter(tags=["sessions"])

LOGIN_CSRF_COOKIE = "bifrost_login_csrf"
REQUESTED_WITH_HEADER = "X-Requested-With"
FormField = Annotated[str, Form(max_length=1024)]


@router.get("/login", response_class=HTMLResponse)
def login_page(
    services: ServicesDep, session_token: Annotated[str | None, Cookie(alias=SESSION_COOKIE)] = None
) -> HTMLResponse:
    """The sign-in form, or, when signed in, who you are and a sign-out button."""
    current = _session(services, session_token)
    if current is not None:
        email, csrf_token = current
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
    email = email.strip().lower()
    throttle = LoginThrottle.from_settings(services.settings)
    lifetime = timedelta(hours=services.settings.session_hours)
    try:
        token = sign_in(services.db_engine, throttle, email, password, ip=client_address(request), lifetime=lifetime)
    except LoginThrottledError as exc:
        response = _login_form(str(exc), 429)
        response.headers["Retry-After"] = str(exc.retry_after)
        return response
    except WrongPasswordError as exc:
        return _login_form(str(exc), status.HTTP_401_UNAUTHORIZED)
    welcome = RedirectResponse("/login", status_code=status.HTTP_303_SEE_OTHER)
    _set_session_cookie(welcome, request, token, lifetime)
    welcome.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return welcome


@router.post(
    "/api/session",
    response_model=SessionOut,
    responses={
        401: {"description": "Wrong email or password."},
        403: {"description": f"No `{REQUESTED_WITH_HEADER}` header."},
        429: {"description": "Too many failed sign-ins; `Retry-After` says when to try again."},
    },
)
def sign_in_from_script(
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
    throttle = LoginThrottle.from_settings(services.settings)
    lifetime = timedelta(hours=services.settings.session_hours)
    email = body.email.strip().lower()
    try:
        token = sign_in(
            services.db_engine, throttle, email, body.password, ip=client_address(request), lifetime=lifetime
        )
    except LoginThrottledError as exc:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS, detail=str(exc), headers={"Retry-After": str(exc.retry_after)}
        ) from exc
    except WrongPasswordError as exc:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail=str(exc)) from exc
    found = signed_in(services.db_engine, token)
    assert found is not None, "a session just opened"
    principal, ui_session = found
    session = SessionOut(
        user_id=principal.user_id,
        email=principal.email,
        org_id=principal.org_id,
        is_platform_admin=principal.is_platform_admin,
        csrf_token=ui_session.csrf_token,
    )
    response = JSONResponse(session.model_dump(mode="json"), headers={"Cache-Control": "no-store"})
    _set_session_cookie(response, request, token, lifetime)
    return response


@router.delete("/api/session", status_code=status.HTTP_204_NO_CONTENT)
def sign_out_from_script(request: Request, services: ServicesDep, user: UserDep) -> Response:
    """Close the browser session the request comes with; like every write with a session, it must carry the
    session's `X-CSRF-Token`."""
    close_browser_session(services.db_engine, user, ip=client_address(request))
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
    sign_out(services.db_engine, session_token, csrf_token, ip=client_address(request))
    response = RedirectResponse("/login", status_code=status.HTTP_303_SEE_OTHER)
    response.delete_cookie(SESSION_COOKIE)
    return response


@router.get("/api/session")
def current_session(services: ServicesDep, user: UserDep) -> SessionOut:
    """Who is calling; for a browser session also its CSRF token."""
    csrf_token = csrf_token_of(services.db_engine, user.session_id) if user.session_id is not None else None
    return SessionOut(
        user_id=user.user_id,
        email=user.email,
        org_id=user.org_id,
        is_platform_admin=user.is_platform_admin,
        csrf_token=csrf_token,
    )


def _set_session_cookie(response: Response, request: Request, token: str, lifetime: timedelta) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(lifetime.total_seconds()),
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )


def _session(services: Services, token: str | None) -> tuple[str, str] | None:
    found = signed_in(services.db_engine, token) if token else None
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
