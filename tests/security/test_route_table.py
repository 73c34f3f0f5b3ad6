"""Every route of the application, called by each kind of caller on objects of org A.

The table below must name every route the app serves: a route added later without an entry here fails
`test_every_route_is_in_the_table`, so nobody can add one without deciding who may call it.
Callers: anonymous, a member of org A, a member of org B, an admin of org A, and a platform admin acting for
org A. Members and org admins act for their home organization; org B's member therefore never acts in A.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi.routing import iter_route_contexts

from control_plane.app import create_app
from tests.security.conftest import PASSWORD, Tenants, create_user

CALLERS = ("anonymous", "member_a", "member_b", "admin_a", "platform")
# Callers that must see nothing of org A.
OUTSIDERS = ("anonymous", "member_b")


@dataclass
class World:
    """Objects of org A that the probes address."""

    tenants: Tenants
    names: dict[str, str]

    def platform_create(self, method: str, path: str, **kwargs: Any) -> None:
        with self.tenants.platform(self.tenants.org_a) as platform:
            made = platform.request(method, path, **kwargs)
            assert made.is_success, made.text


Fresh = Callable[[World], dict[str, str]]


@dataclass(frozen=True)
class Probe:
    expect: tuple[int, int, int, int, int]
    path: str | None = None
    json: Any = None
    form: dict[str, str] | None = None
    content: bytes | None = None
    fresh: Fresh | None = field(default=None, compare=False)
    """Makes a new target per call, for routes that use their target up (delete, revoke)."""
    hidden: str | None = None
    """Text of org A's objects that outsiders must not find in the answer."""


def probe(anonymous: int, member_a: int, member_b: int, admin_a: int, platform: int, **options: Any) -> Probe:
    return Probe((anonymous, member_a, member_b, admin_a, platform), **options)


def _new_user(world: World) -> dict[str, str]:
    with world.tenants.platform() as platform:
        return {"user": create_user(platform, world.tenants.org_a, f"{uuid.uuid4().hex[:8]}@a.test", "member")}


def _new_service_key(world: World) -> dict[str, str]:
    with world.tenants.platform(world.tenants.org_a) as platform:
        return {"key": platform.post("/api/keys/service", json={"name": "probe"}).json()["id"]}


def _new_secret(world: World) -> dict[str, str]:
    name = f"probe-{uuid.uuid4().hex[:8]}"
    world.platform_create("PUT", f"/api/secrets/{name}", json={"value": "probe-value"})
    return {"name": name}


def _new_config(world: World) -> dict[str, str]:
    name = f"probe-{uuid.uuid4().hex[:8]}"
    world.platform_create("PUT", f"/api/config/{name}", json={"value": 1})
    return {"name": name}


def _new_file(world: World) -> dict[str, str]:
    path = f"probe-{uuid.uuid4().hex[:8]}.txt"
    world.platform_create("PUT", f"/api/workspace/files/{path}", content=b"probe")
    return {"path": path}


ROUTE_FORM = {
    "name": "Route form",
    "workflow": "ping",
    "fields": [{"name": "text", "data_provider": {"name": "teams"}}],
}


def _new_form(world: World) -> dict[str, str]:
    with world.tenants.client("admin_a") as admin_a:
        made = admin_a.post("/api/forms", json={**ROUTE_FORM, "name": f"Probe {uuid.uuid4().hex[:8]}"})
        assert made.status_code == 201, made.text
        return {"form_id": made.json()["id"]}


def _new_schedule(world: World) -> dict[str, str]:
    with world.tenants.platform(world.tenants.org_a) as platform:
        made = platform.post("/api/schedules", json={"workflow_name": "ping", "cron": "0 9 * * *"})
        assert made.is_success, made.text
        return {"schedule": made.json()["id"]}


def _unique(_world: World) -> dict[str, str]:
    return {"unique": uuid.uuid4().hex[:8]}


PUBLIC = probe(200, 200, 200, 200, 200)
SIGNED_IN = probe(401, 200, 200, 200, 200)
OWN_ORG = probe(401, 200, 404, 200, 200)
ORG_ADMINS = probe(401, 403, 403, 200, 200)
PLATFORM_ADMINS = probe(401, 403, 403, 403, 200)
TOKENS_ONLY = probe(401, 401, 401, 401, 401)
EXECUTION = "/api/executions/{execution}"
FORM = "/api/forms/{form}"

ROUTES: dict[tuple[str, str], Probe] = {
    ("GET", "/openapi.json"): PUBLIC,
    ("GET", "/docs"): PUBLIC,
    ("GET", "/docs/oauth2-redirect"): PUBLIC,
    ("GET", "/redoc"): PUBLIC,
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/readyz"): PUBLIC,
    ("GET", "/metrics"): PUBLIC,
    ("GET", "/login"): PUBLIC,
    # Without the form's own CSRF cookie nobody, signed in or not, can post a login.
    ("POST", "/login"): probe(
        403, 403, 403, 403, 403, form={"email": "member@a.test", "password": PASSWORD, "csrf_token": "x"}
    ),
    ("POST", "/logout"): probe(401, 401, 401, 401, 401, form={"csrf_token": "x"}),
    ("GET", "/api/session"): SIGNED_IN,
    # Without X-Requested-With nobody can sign in from a script; API keys have no browser session to close.
    ("POST", "/api/session"): probe(403, 403, 403, 403, 403, json={"email": "member@a.test", "password": PASSWORD}),
    ("DELETE", "/api/session"): probe(401, 400, 400, 400, 400),
    ("GET", "/api/workflows"): SIGNED_IN,
    ("GET", "/api/workflows/{name}"): probe(401, 200, 200, 200, 200, path="/api/workflows/whoami"),
    ("GET", "/api/workspace/errors"): SIGNED_IN,
    ("GET", "/api/workflows/{name}/access"): probe(*SIGNED_IN.expect, path="/api/workflows/whoami/access"),
    ("PUT", "/api/workflows/{name}/access"): probe(
        *PLATFORM_ADMINS.expect, path="/api/workflows/leak/access", json={"roles": ["member", "org_admin"]}
    ),
    ("DELETE", "/api/workflows/{name}/access"): probe(401, 403, 403, 403, 204, path="/api/workflows/leak/access"),
    ("POST", "/api/workflows/{name}/execute"): probe(401, 200, 200, 200, 200, path="/api/workflows/whoami/execute"),
    ("POST", "/api/endpoints/{name}"): probe(401, 200, 200, 200, 200, path="/api/endpoints/ping", json={}),
    ("GET", "/api/data-providers"): SIGNED_IN,
    ("GET", "/api/data-providers/{name}"): probe(*SIGNED_IN.expect, path="/api/data-providers/teams"),
    ("POST", "/api/data-providers/{name}/options"): probe(
        *SIGNED_IN.expect, path="/api/data-providers/teams/options", json={"inputs": {"prefix": "route-"}}
    ),
    ("GET", "/api/forms"): probe(*SIGNED_IN.expect, hidden="{form}"),
    ("POST", "/api/forms"): probe(
        401, 403, 403, 201, 201, json={**ROUTE_FORM, "name": "Probe {unique}"}, fresh=_unique
    ),
    ("POST", "/api/forms/preview"): probe(*ORG_ADMINS.expect, json=ROUTE_FORM),
    ("GET", "/api/forms/{form_id}"): probe(*OWN_ORG.expect, path=FORM),
    ("PUT", "/api/forms/{form_id}"): probe(401, 403, 404, 200, 200, path=FORM, json=ROUTE_FORM),
    ("DELETE", "/api/forms/{form_id}"): probe(401, 403, 404, 204, 204, path="/api/forms/{form_id}", fresh=_new_form),
    ("GET", "/api/forms/{form_id}/schema"): probe(*OWN_ORG.expect, path=FORM + "/schema"),
    ("POST", "/api/forms/{form_id}/fields/{field_name}/options"): probe(
        *OWN_ORG.expect, path=FORM + "/fields/text/options", json={"values": {}}
    ),
    # The one choice teams offers is the caller's organization: A's, for everyone who may use A's form.
    ("POST", "/api/forms/{form_id}/submit"): probe(
        *OWN_ORG.expect, path=FORM + "/submit", json={"values": {"text": "{org_a}"}}
    ),
    ("GET", "/api/executions"): probe(401, 200, 200, 200, 200, hidden="{execution}"),
    ("GET", "/api/executions/{execution_id}"): probe(*OWN_ORG.expect, path=EXECUTION),
    ("GET", "/api/executions/{execution_id}/logs"): probe(*OWN_ORG.expect, path=EXECUTION + "/logs"),
    ("GET", "/api/executions/{execution_id}/variables"): probe(*OWN_ORG.expect, path=EXECUTION + "/variables"),
    ("GET", "/api/executions/{execution_id}/result"): probe(*OWN_ORG.expect, path=EXECUTION + "/result"),
    ("GET", "/api/executions/{execution_id}/stream"): probe(*OWN_ORG.expect, path=EXECUTION + "/stream"),
    # Allowed callers reach the check that the execution has already finished.
    ("POST", "/api/executions/{execution_id}/cancel"): probe(401, 409, 404, 409, 409, path=EXECUTION + "/cancel"),
    ("GET", "/api/runner/payload"): TOKENS_ONLY,
    ("POST", "/api/runner/workflows/{name}/run"): probe(
        *TOKENS_ONLY.expect, path="/api/runner/workflows/whoami/run", json={}
    ),
    ("GET", "/api/runner/executions/{execution_id}"): probe(
        *TOKENS_ONLY.expect, path="/api/runner/executions/{execution}"
    ),
    ("GET", "/api/runner/secrets/{name}"): probe(*TOKENS_ONLY.expect, path="/api/runner/secrets/{secret}"),
    ("GET", "/api/runner/config/{name}"): probe(*TOKENS_ONLY.expect, path="/api/runner/config/{config}"),
    ("GET", "/api/orgs"): probe(401, 200, 200, 200, 200, hidden="{org_a}"),
    ("POST", "/api/orgs"): probe(*PLATFORM_ADMINS.expect[:4], 201, json={"name": "Org {unique}"}, fresh=_unique),
    ("GET", "/api/orgs/{org_id}"): probe(*OWN_ORG.expect, path="/api/orgs/{org_a}"),
    ("PATCH", "/api/orgs/{org_id}"): probe(*PLATFORM_ADMINS.expect, path="/api/orgs/{org_a}", json={"name": "Org A"}),
    ("GET", "/api/orgs/{org_id}/members"): probe(401, 403, 404, 200, 200, path="/api/orgs/{org_a}/members"),
    ("PUT", "/api/orgs/{org_id}/members/{user_id}"): probe(
        401, 403, 404, 200, 200, path="/api/orgs/{org_a}/members/{member_a}", json={"role": "member"}
    ),
    ("DELETE", "/api/orgs/{org_id}/members/{user_id}"): probe(
        401, 403, 404, 204, 204, path="/api/orgs/{org_a}/members/{user}", fresh=_new_user
    ),
    ("GET", "/api/users/me"): SIGNED_IN,
    ("GET", "/api/users"): ORG_ADMINS,
    ("POST", "/api/users"): probe(
        401, 403, 403, 201, 201, json={"email": "{unique}@a.test", "password": PASSWORD}, fresh=_unique
    ),
    ("GET", "/api/users/{user_id}"): probe(*OWN_ORG.expect, path="/api/users/{member_a}"),
    ("PATCH", "/api/users/{user_id}"): probe(
        401, 200, 404, 403, 200, path="/api/users/{member_a}", json={"name": "Member A"}
    ),
    ("GET", "/api/keys"): probe(401, 200, 200, 200, 200, hidden="{member_a_key}"),
    ("POST", "/api/keys"): probe(401, 201, 201, 201, 201, json={"name": "probe"}),
    ("POST", "/api/keys/service"): probe(401, 403, 403, 201, 201, json={"name": "probe"}),
    ("DELETE", "/api/keys/{key_id}"): probe(401, 404, 404, 204, 204, path="/api/keys/{key}", fresh=_new_service_key),
    ("GET", "/api/secrets"): ORG_ADMINS,
    ("PUT", "/api/secrets/{name}"): probe(*ORG_ADMINS.expect, path="/api/secrets/{secret}", json={"value": "v" * 8}),
    ("DELETE", "/api/secrets/{name}"): probe(401, 403, 403, 204, 204, path="/api/secrets/{name}", fresh=_new_secret),
    ("POST", "/api/secrets/rotate"): PLATFORM_ADMINS,
    ("GET", "/api/config"): probe(401, 200, 200, 200, 200, hidden="{config}"),
    ("GET", "/api/config/{name}"): probe(*OWN_ORG.expect, path="/api/config/{config}"),
    ("PUT", "/api/config/{name}"): probe(*ORG_ADMINS.expect, path="/api/config/{config}", json={"value": 2}),
    ("DELETE", "/api/config/{name}"): probe(401, 403, 403, 204, 204, path="/api/config/{name}", fresh=_new_config),
    ("GET", "/api/audit"): ORG_ADMINS,
    # Before the workspace routes, which replace the workspace and its workflows.
    ("GET", "/api/schedules"): probe(*ORG_ADMINS.expect, hidden="{schedule}"),
    ("POST", "/api/schedules"): probe(401, 403, 403, 201, 201, json={"workflow_name": "ping", "cron": "0 9 * * *"}),
    ("GET", "/api/schedules/{schedule_id}"): probe(*ORG_ADMINS.expect, path="/api/schedules/{schedule}"),
    ("PATCH", "/api/schedules/{schedule_id}"): probe(
        *ORG_ADMINS.expect, path="/api/schedules/{schedule}", json={"enabled": True}
    ),
    ("DELETE", "/api/schedules/{schedule_id}"): probe(
        401, 403, 403, 204, 204, path="/api/schedules/{schedule}", fresh=_new_schedule
    ),
    ("GET", "/api/workspace/files"): SIGNED_IN,
    ("GET", "/api/workspace/files/{path}"): probe(*SIGNED_IN.expect, path="/api/workspace/files/security_flows.py"),
    ("PUT", "/api/workspace/files/{path}"): probe(
        *PLATFORM_ADMINS.expect, path="/api/workspace/files/probe.txt", content=b"probe"
    ),
    ("DELETE", "/api/workspace/files/{path}"): probe(
        401, 403, 403, 403, 204, path="/api/workspace/files/{path}", fresh=_new_file
    ),
    ("POST", "/api/workspace/sync"): probe(*PLATFORM_ADMINS.expect, json={"files": {"probe-sync.txt": "probe"}}),
}


def served_routes(tenants: Tenants) -> set[tuple[str, str]]:
    app = create_app(tenants.bifrost.settings)
    return {
        (method, (route.path or "").replace(":path}", "}"))
        for route in iter_route_contexts(app.routes)
        for method in route.methods or ()
        if method != "HEAD"
    }


@pytest.fixture(scope="module")
def world(tenants: Tenants) -> World:
    with tenants.client("member_a") as member_a:
        execution = member_a.post("/api/workflows/whoami/execute").json()["execution_id"]
        member_a_key = member_a.get("/api/keys").json()[0]["id"]
    with tenants.client("admin_a") as admin_a:
        assert admin_a.put("/api/secrets/route-secret-a", json={"value": "route-secret-value"}).is_success
        assert admin_a.put("/api/config/route-config-a", json={"value": 1}).is_success
        form = admin_a.post("/api/forms", json=ROUTE_FORM)
        assert form.status_code == 201, form.text
        schedule = admin_a.post("/api/schedules", json={"workflow_name": "ping", "cron": "0 9 * * *"}).json()["id"]
    return World(
        tenants,
        {
            "org_a": tenants.org_a,
            "member_a": tenants.member_a,
            "execution": execution,
            "member_a_key": member_a_key,
            "secret": "route-secret-a",
            "config": "route-config-a",
            "form": form.json()["id"],
            "schedule": schedule,
        },
    )


def test_every_route_is_in_the_table(tenants: Tenants) -> None:
    served = served_routes(tenants)
    assert sorted(served - ROUTES.keys()) == [], "routes without an entry in ROUTES: decide who may call them"
    assert sorted(ROUTES.keys() - served) == [], "entries of ROUTES for routes the app no longer serves"


def _fill(template: Any, values: dict[str, str]) -> Any:
    if isinstance(template, str):
        return template.format(**values)
    if isinstance(template, dict):
        return {key: _fill(value, values) for key, value in template.items()}
    return template


@pytest.mark.parametrize(("method", "route"), list(ROUTES), ids=[f"{m} {p}" for m, p in ROUTES])
def test_route_answers_each_caller_as_the_table_says(world: World, method: str, route: str) -> None:
    entry = ROUTES[(method, route)]
    outcomes = {}
    for caller in CALLERS:
        values = {**world.names, **(entry.fresh(world) if entry.fresh else {})}
        org = world.tenants.org_a if caller == "platform" else None
        with world.tenants.client(caller, org) as client:
            answer = client.request(
                method,
                _fill(entry.path or route, values),
                json=_fill(entry.json, values),
                data=entry.form,
                content=entry.content,
            )
        outcomes[caller] = answer.status_code
        if entry.hidden and caller in OUTSIDERS:
            assert _fill(entry.hidden, values) not in answer.text, f"{caller} sees org A's data"
    assert outcomes == dict(zip(CALLERS, entry.expect, strict=True))
