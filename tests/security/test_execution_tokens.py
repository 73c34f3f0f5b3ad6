"""Execution tokens: good for the SDK routes of their own execution while it runs, and for nothing else."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from control_plane.security.tokens import TokenIssuer
from tests.api.conftest import SECRET_KEY, eventually
from tests.security.conftest import Tenants
from tests.security.test_route_table import ROUTES, served_routes

SDK_ROUTES = ("/api/runner/payload", "/api/runner/secrets/a-only", "/api/runner/config/a-only")


def token_for(execution: dict[str, str], *, valid_for: timedelta = timedelta(hours=1), key: str = SECRET_KEY) -> str:
    """The token the engine hands the runner of `execution`."""
    return TokenIssuer(key.encode()).issue(
        execution_id=execution["execution_id"],
        org_id=execution["org_id"],
        user_id=execution["user_id"],
        expires_at=datetime.now(UTC) + valid_for,
    )


def runner_client(tenants: Tenants, token: str) -> httpx.Client:
    return httpx.Client(base_url=tenants.bifrost.url, headers={"Authorization": f"Bearer {token}"}, timeout=60)


def start_hold(tenants: Tenants, caller: str) -> dict[str, str]:
    with tenants.client(caller) as client:
        started = client.post("/api/workflows/hold/execute", json={"parameters": {"seconds": 120}})
        assert started.status_code == 202, started.text
        execution_id = started.json()["execution_id"]
        running: dict[str, str] = eventually(
            lambda: (e := client.get(f"/api/executions/{execution_id}").json())["status"] == "Running" and e,
            what="the execution to run",
        )
        return running


@pytest.fixture(scope="module")
def running(tenants: Tenants) -> Iterator[dict[str, dict[str, str]]]:
    with tenants.client("admin_a") as admin_a:
        assert admin_a.put("/api/secrets/a-only", json={"value": "only-for-org-a-77"}).status_code == 200
        assert admin_a.put("/api/config/a-only", json={"value": 1}).status_code == 200
    executions = {"a": start_hold(tenants, "member_a"), "b": start_hold(tenants, "member_b")}
    yield executions
    with tenants.platform() as platform:
        for execution in executions.values():
            platform.post(f"/api/executions/{execution['execution_id']}/cancel")


def test_token_reads_its_own_payload_and_its_orgs_secret(tenants: Tenants, running: dict[str, dict[str, str]]) -> None:
    with runner_client(tenants, token_for(running["a"])) as runner:
        payload = runner.get("/api/runner/payload")
        assert payload.status_code == 200
        assert payload.json()["execution_id"] == running["a"]["execution_id"]
        assert payload.json()["organization"]["id"] == tenants.org_a
        assert runner.get("/api/runner/secrets/a-only").json() == {"value": "only-for-org-a-77"}
        assert runner.get("/api/runner/config/a-only").json() == {"value": 1}


def test_token_cannot_read_another_orgs_secret(tenants: Tenants, running: dict[str, dict[str, str]]) -> None:
    with runner_client(tenants, token_for(running["b"])) as runner:
        assert runner.get("/api/runner/secrets/a-only").status_code == 404
        assert runner.get("/api/runner/config/a-only").status_code == 404


def test_token_cannot_reach_another_execution(tenants: Tenants, running: dict[str, dict[str, str]]) -> None:
    with runner_client(tenants, token_for(running["b"])) as runner:
        other = runner.get(f"/api/runner/executions/{running['a']['execution_id']}")
        assert other.status_code == 404
        assert runner.get("/api/runner/payload").json()["execution_id"] == running["b"]["execution_id"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/executions"),
        ("GET", "/api/workflows"),
        ("GET", "/api/secrets"),
        ("GET", "/api/config"),
        ("GET", "/api/session"),
        ("POST", "/api/workflows/whoami/execute"),
        ("POST", "/api/keys"),
    ],
)
def test_token_is_refused_outside_the_sdk_routes(
    tenants: Tenants, running: dict[str, dict[str, str]], method: str, path: str
) -> None:
    with runner_client(tenants, token_for(running["a"])) as runner:
        assert runner.request(method, path, json={"name": "x"}).status_code == 401
        assert runner.get(f"/api/executions/{running['a']['execution_id']}").status_code == 401


def test_expired_or_foreign_tokens_are_refused(tenants: Tenants, running: dict[str, dict[str, str]]) -> None:
    expired = token_for(running["a"], valid_for=timedelta(seconds=-1))
    foreign = token_for(running["a"], key="another-signing-key-of-32-bytes-or-more")
    for token, reason in ((expired, "expired"), (foreign, "signature")):
        with runner_client(tenants, token) as runner:
            for path in SDK_ROUTES:
                refused = runner.get(path)
                assert refused.status_code == 401
                assert reason in refused.json()["detail"].lower()


def test_token_is_refused_on_every_runner_route_once_its_execution_finished(tenants: Tenants) -> None:
    with tenants.client("member_a") as member_a:
        finished = member_a.post("/api/workflows/parent/execute").json()
        assert finished["status"] == "Success", finished["error"]
        child = finished["result"]["child"]
        assert member_a.get(f"/api/executions/{child}").json()["parent_execution_id"] == finished["execution_id"]
    runner_routes = sorted(route for route in served_routes(tenants) if route[1].startswith("/api/runner/"))
    assert len(runner_routes) == 5, runner_routes
    values = {"execution": child, "secret": "a-only", "config": "a-only"}
    with runner_client(tenants, token_for(finished)) as runner:
        for method, route in runner_routes:
            probe = ROUTES[(method, route)]
            after = runner.request(method, (probe.path or route).format(**values), json=probe.json)
            assert after.status_code == 401, (method, route, after.text)
            detail = after.json()["detail"]
            assert f"execution {finished['execution_id']}, which already finished (Success)" in detail
