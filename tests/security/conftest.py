"""A running Bifrost with two tenants: org A (a member and an org admin) and org B (a member), plus the
bootstrap platform admin, each with an API key made the way a person makes one: signing in at /login and
creating it with the session."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from control_plane.api.dependencies import CSRF_HEADER, ORG_HEADER
from tests.api.conftest import ADMIN_KEY, Bifrost, eventually, fresh_database, running_bifrost

PASSWORD = "correct horse battery staple"

WORKFLOWS = """
import asyncio
import hashlib
import logging

from bifrost import config, context, data_provider, secrets, workflow, workflows

logger = logging.getLogger(__name__)


@workflow(execution_mode="sync")
async def whoami():
    return {"org_id": context.org_id, "user": context.user.email}


@workflow(execution_mode="sync", endpoint_enabled=True)
async def ping(text: str = "pong"):
    return {"text": text}


@workflow(execution_mode="sync")
async def leak(name: str):
    value = await secrets.get(name)
    logger.info("the secret is %s", value)
    setting = await config.get(name)
    fingerprint = hashlib.sha256(value.encode()).hexdigest() if value else None
    return {"secret": value, "config": setting, "fingerprint": fingerprint}


@workflow
async def hold(seconds: float = 60):
    await asyncio.sleep(seconds)


@workflow(execution_mode="sync")
async def parent():
    return {"child": await workflows.run("whoami", wait=False)}


@data_provider(cache_ttl_seconds=600)
async def teams(prefix: str = ""):
    return [{"value": f"{prefix}{context.org_id}", "label": context.organization.name}]
"""


@contextmanager
def signed_in(url: str, email: str, password: str) -> Iterator[httpx.Client]:
    """A browser-like client signed in through the login form (cookies kept)."""
    with httpx.Client(base_url=url, timeout=60) as browser:
        form = browser.get("/login")
        form.raise_for_status()
        answer = browser.post("/login", data={"email": email, "password": password, "csrf_token": form_csrf(form.text)})
        assert answer.status_code == 303, answer.text
        yield browser


def form_csrf(page: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, f"no csrf_token in the page: {page}"
    return match.group(1)


def session_csrf(browser: httpx.Client) -> str:
    token: str = browser.get("/api/session").json()["csrf_token"]
    return token


def make_key(url: str, email: str) -> str:
    with signed_in(url, email, PASSWORD) as browser:
        created = browser.post("/api/keys", json={"name": "tests"}, headers={CSRF_HEADER: session_csrf(browser)})
    assert created.status_code == 201, created.text
    key: str = created.json()["key"]
    return key


@dataclass
class Tenants:
    bifrost: Bifrost
    org_a: str
    org_b: str
    member_a: str
    admin_a: str
    member_b: str
    keys: dict[str, str]
    """API key per caller: member_a, admin_a, member_b, platform."""

    def client(self, caller: str, org: str | None = None) -> httpx.Client:
        headers = {ORG_HEADER: org} if org else {}
        if caller != "anonymous":
            headers["Authorization"] = f"Bearer {self.keys[caller]}"
        return httpx.Client(base_url=self.bifrost.url, headers=headers, timeout=60)

    def platform(self, org: str | None = None) -> httpx.Client:
        return self.client("platform", org)


def create_org(admin: httpx.Client, name: str) -> str:
    created = admin.post("/api/orgs", json={"name": name})
    assert created.status_code == 201, created.text
    org_id: str = created.json()["id"]
    return org_id


def create_user(admin: httpx.Client, org: str, email: str, role: str) -> str:
    created = admin.post(
        "/api/users", json={"email": email, "password": PASSWORD, "role": role}, headers={ORG_HEADER: org}
    )
    assert created.status_code == 201, created.text
    user_id: str = created.json()["id"]
    return user_id


def populate(bifrost: Bifrost) -> Tenants:
    with bifrost.client(ADMIN_KEY) as admin:
        org_a = create_org(admin, "Org A")
        org_b = create_org(admin, "Org B")
        users = {
            "member_a": create_user(admin, org_a, "member@a.test", "member"),
            "admin_a": create_user(admin, org_a, "admin@a.test", "org_admin"),
            "member_b": create_user(admin, org_b, "member@b.test", "member"),
        }
    emails = {"member_a": "member@a.test", "admin_a": "admin@a.test", "member_b": "member@b.test"}
    keys = {caller: make_key(bifrost.url, email) for caller, email in emails.items()}
    return Tenants(
        bifrost=bifrost,
        org_a=org_a,
        org_b=org_b,
        keys={**keys, "platform": ADMIN_KEY},
        **users,
    )


@pytest.fixture(scope="module")
def database_kind() -> str:
    """`sqlite` or `postgresql`; a module overrides this fixture to run on the other."""
    return "sqlite"


@pytest.fixture(scope="module")
def tenants(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest, database_kind: str
) -> Iterator[Tenants]:
    with running_tenants(database_kind, tmp_path_factory, request) as running:
        yield running


@contextmanager
def running_tenants(
    database_kind: str, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Tenants]:
    tmp: Path = tmp_path_factory.mktemp("security")
    database_url = fresh_database(database_kind, tmp, request)
    with running_bifrost(tmp, database_url, {"security_flows.py": WORKFLOWS}) as bifrost:
        with bifrost.client() as admin:
            wait_for_workflows(admin)
        yield populate(bifrost)


def wait_for_workflows(admin: httpx.Client) -> None:
    eventually(
        lambda: {"whoami", "ping", "leak", "hold", "parent"} <= {w["name"] for w in admin.get("/api/workflows").json()},
        what="the workflows to register",
    )
    eventually(lambda: admin.get("/api/data-providers/teams").status_code == 200, what="the data provider")


# Who lists what: every list route each principal may read.
MEMBER_LISTS = (
    "/api/executions",
    "/api/forms",
    "/api/data-providers",
    "/api/config",
    "/api/keys",
    "/api/orgs",
    "/api/workflows",
    "/api/workspace/files",
    "/api/workspace/errors",
    "/api/users/me",
)
ADMIN_LISTS = (*MEMBER_LISTS, "/api/users", "/api/secrets", "/api/audit", "/api/orgs/{org}/members")
READERS = {"member_a": MEMBER_LISTS, "member_b": MEMBER_LISTS, "admin_a": ADMIN_LISTS, "platform": ADMIN_LISTS}


def nested(depth: int) -> Any:
    """A value `depth` arrays deep."""
    value: Any = "bottom"
    for _ in range(depth):
        value = [value]
    return value


def send_json(client: httpx.Client, method: str, path: str, body: Any) -> httpx.Response:
    # json.dumps escapes a lone surrogate as `\ud800` and writes NaN, as a careless client would.
    return client.request(method, path, content=json.dumps(body).encode(), headers={"Content-Type": "application/json"})


def readers(tenants: Tenants) -> Iterator[tuple[str, httpx.Client, str]]:
    """Each principal with the organization they act for; the platform admin once in each organization."""
    for caller, org in (
        ("member_a", tenants.org_a),
        ("admin_a", tenants.org_a),
        ("member_b", tenants.org_b),
        ("platform", tenants.org_a),
        ("platform", tenants.org_b),
    ):
        yield caller, tenants.client(caller, org if caller == "platform" else None), org


def assert_every_list_answers(tenants: Tenants) -> None:
    failures = []
    for caller, client, org in readers(tenants):
        with client:
            for path in READERS[caller]:
                answer = client.get(path.format(org=org))
                if answer.status_code != 200:
                    failures.append(f"{caller} in {org}: GET {path} -> {answer.status_code} {answer.text[:200]}")
    assert failures == []
