"""Browser sign-in: the form, the session cookie, CSRF on writes, rate limiting of failed logins, logout."""

from __future__ import annotations

import httpx

from control_plane.api.dependencies import CSRF_HEADER, SESSION_COOKIE
from control_plane.api.sessions import LOGIN_CSRF_COOKIE, REQUESTED_WITH_HEADER
from tests.security.conftest import PASSWORD, Tenants, create_user, form_csrf, session_csrf, signed_in


def login_attempt(url: str, email: str, password: str) -> httpx.Response:
    with httpx.Client(base_url=url, timeout=60) as browser:
        token = form_csrf(browser.get("/login").text)
        return browser.post("/login", data={"email": email, "password": password, "csrf_token": token})


def new_user(tenants: Tenants, email: str) -> str:
    with tenants.platform() as platform:
        return create_user(platform, tenants.org_a, email, "member")


def test_sign_in_sets_an_httponly_samesite_cookie_that_authenticates(tenants: Tenants) -> None:
    with httpx.Client(base_url=tenants.bifrost.url, timeout=60) as browser:
        token = form_csrf(browser.get("/login").text)
        signed_in = browser.post("/login", data={"email": "member@a.test", "password": PASSWORD, "csrf_token": token})
        assert signed_in.status_code == 303
        cookie = next(v for k, v in signed_in.headers.multi_items() if k == "set-cookie" and SESSION_COOKIE in v)
        assert "HttpOnly" in cookie
        assert "SameSite=lax" in cookie
        session = browser.get("/api/session").json()
        assert (session["email"], session["org_id"]) == ("member@a.test", tenants.org_a)
        assert "Signed in as" in browser.get("/login").text


def test_writes_with_a_session_need_its_csrf_token(tenants: Tenants) -> None:
    with signed_in(tenants.bifrost.url, "member@a.test", PASSWORD) as browser:
        missing = browser.post("/api/keys", json={"name": "k"})
        assert missing.status_code == 403
        assert CSRF_HEADER in missing.json()["detail"]
        wrong = browser.post("/api/keys", json={"name": "k"}, headers={CSRF_HEADER: "forged"})
        assert wrong.status_code == 403
        assert browser.get("/api/keys").status_code == 200  # reads need no token
        right = browser.post("/api/keys", json={"name": "k"}, headers={CSRF_HEADER: session_csrf(browser)})
        assert right.status_code == 201


def test_login_post_without_the_form_token_is_refused(tenants: Tenants) -> None:
    form = {"email": "member@a.test", "password": PASSWORD, "csrf_token": "guessed"}
    with httpx.Client(base_url=tenants.bifrost.url, timeout=60) as browser:
        no_cookie = browser.post("/login", data=form)
        assert no_cookie.status_code == 403
        browser.get("/login")
        assert browser.cookies.get(LOGIN_CSRF_COOKIE)
        mismatched = browser.post("/login", data=form)
        assert mismatched.status_code == 403
        assert SESSION_COOKIE not in browser.cookies


def test_wrong_password_and_unknown_email_get_the_same_answer(tenants: Tenants) -> None:
    new_user(tenants, "same@a.test")
    wrong_password = login_attempt(tenants.bifrost.url, "same@a.test", "not the password at all")
    unknown_email = login_attempt(tenants.bifrost.url, "nobody@a.test", "not the password at all")
    assert wrong_password.status_code == unknown_email.status_code == 401
    assert "Wrong email or password" in wrong_password.text
    assert "Wrong email or password" in unknown_email.text


def test_repeated_failures_block_logins_even_with_the_right_password(tenants: Tenants) -> None:
    new_user(tenants, "target@a.test")
    limit = tenants.bifrost.settings.login_max_failures
    for _ in range(limit):
        assert login_attempt(tenants.bifrost.url, "target@a.test", "guess guess guess").status_code == 401
    blocked = login_attempt(tenants.bifrost.url, "target@a.test", PASSWORD)
    assert blocked.status_code == 429
    assert int(blocked.headers["Retry-After"]) > 0
    assert login_attempt(tenants.bifrost.url, "member@b.test", PASSWORD).status_code == 303  # others unaffected
    with tenants.platform() as platform:
        audit = platform.get("/api/audit", params={"all_orgs": True}).json()["events"]
    attempts = [(e["action"], e["actor_email"]) for e in audit if e["actor_email"] == "target@a.test"]
    assert attempts.count(("login.failed", "target@a.test")) == limit
    assert ("login.rate_limited", "target@a.test") in attempts


def test_logout_closes_the_session_for_good(tenants: Tenants) -> None:
    with signed_in(tenants.bifrost.url, "member@a.test", PASSWORD) as browser:
        token = browser.cookies[SESSION_COOKIE]
        refused = browser.post("/logout", data={"csrf_token": "forged"})
        assert refused.status_code == 403
        logged_out = browser.post("/logout", data={"csrf_token": form_csrf(browser.get("/login").text)})
        assert logged_out.status_code == 303
    with httpx.Client(base_url=tenants.bifrost.url, cookies={SESSION_COOKIE: token}, timeout=60) as replay:
        assert replay.get("/api/session").status_code == 401


def test_changing_the_password_ends_other_sessions(tenants: Tenants) -> None:
    user_id = new_user(tenants, "changer@a.test")
    with (
        signed_in(tenants.bifrost.url, "changer@a.test", PASSWORD) as first,
        signed_in(tenants.bifrost.url, "changer@a.test", PASSWORD) as second,
    ):
        new_password = "a brand new long password"
        changed = first.patch(
            f"/api/users/{user_id}", json={"password": new_password}, headers={CSRF_HEADER: session_csrf(first)}
        )
        assert changed.status_code == 200, changed.text
        assert second.get("/api/session").status_code == 401
    assert login_attempt(tenants.bifrost.url, "changer@a.test", PASSWORD).status_code == 401
    assert login_attempt(tenants.bifrost.url, "changer@a.test", new_password).status_code == 303


def ui_sign_in(browser: httpx.Client, email: str, password: str) -> httpx.Response:
    """Sign in as the web UI does."""
    return browser.post(
        "/api/session", json={"email": email, "password": password}, headers={REQUESTED_WITH_HEADER: "bifrost-ui"}
    )


def test_the_web_ui_signs_in_with_the_same_cookie_and_gets_its_csrf_token(tenants: Tenants) -> None:
    with httpx.Client(base_url=tenants.bifrost.url, timeout=60) as browser:
        answer = ui_sign_in(browser, "Member@A.test", PASSWORD)
        assert answer.status_code == 200, answer.text
        cookie = next(v for k, v in answer.headers.multi_items() if k == "set-cookie" and SESSION_COOKIE in v)
        assert "HttpOnly" in cookie
        assert "SameSite=lax" in cookie
        signed_in = answer.json()
        assert (signed_in["email"], signed_in["org_id"]) == ("member@a.test", tenants.org_a)
        assert signed_in["csrf_token"] == session_csrf(browser)
        assert browser.post("/api/keys", json={"name": "k"}).status_code == 403
        created = browser.post("/api/keys", json={"name": "k"}, headers={CSRF_HEADER: signed_in["csrf_token"]})
        assert created.status_code == 201


def test_a_sign_in_without_the_requested_with_header_is_refused(tenants: Tenants) -> None:
    """What a form of another site can send: it must not sign the visitor in to the attacker's account."""
    with httpx.Client(base_url=tenants.bifrost.url, timeout=60) as browser:
        refused = browser.post("/api/session", json={"email": "member@a.test", "password": PASSWORD})
        assert refused.status_code == 403
        assert REQUESTED_WITH_HEADER in refused.json()["detail"]
        assert SESSION_COOKIE not in browser.cookies


def test_web_ui_sign_ins_share_the_answers_and_the_rate_limit_of_the_form(tenants: Tenants) -> None:
    new_user(tenants, "scripted@a.test")
    limit = tenants.bifrost.settings.login_max_failures
    with httpx.Client(base_url=tenants.bifrost.url, timeout=60) as browser:
        unknown = ui_sign_in(browser, "nobody@a.test", "not the password at all")
        assert (unknown.status_code, unknown.json()["detail"]) == (401, "Wrong email or password.")
        for _ in range(limit - 1):
            assert ui_sign_in(browser, "scripted@a.test", "guess guess guess").status_code == 401
        assert login_attempt(tenants.bifrost.url, "scripted@a.test", "guess guess guess").status_code == 401
        blocked = ui_sign_in(browser, "scripted@a.test", PASSWORD)
        assert blocked.status_code == 429
        assert int(blocked.headers["Retry-After"]) > 0
        assert SESSION_COOKIE not in browser.cookies


def test_the_web_ui_signs_out_with_its_csrf_token(tenants: Tenants) -> None:
    with httpx.Client(base_url=tenants.bifrost.url, timeout=60) as browser:
        csrf_token = ui_sign_in(browser, "member@a.test", PASSWORD).json()["csrf_token"]
        token = browser.cookies[SESSION_COOKIE]
        assert browser.delete("/api/session").status_code == 403
        assert browser.delete("/api/session", headers={CSRF_HEADER: csrf_token}).status_code == 204
        assert SESSION_COOKIE not in browser.cookies
    with httpx.Client(base_url=tenants.bifrost.url, cookies={SESSION_COOKIE: token}, timeout=60) as replay:
        assert replay.get("/api/session").status_code == 401
    with tenants.client("member_a") as member:
        not_a_session = member.delete("/api/session")
        assert not_a_session.status_code == 400
        assert member.get("/api/session").status_code == 200
