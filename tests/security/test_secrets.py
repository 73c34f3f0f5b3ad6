"""Secrets and config end to end: set over the API, read by a running workflow of the right organization,
kept encrypted in the database, and masked wherever the execution's output goes."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import httpx
import pytest

from control_plane.api.dependencies import ORG_HEADER
from tests.security.conftest import Tenants

A_VALUE = "org-a-secret-value-3f9c1e"
GLOBAL_VALUE = "global-secret-value-8d2b7a"


def fingerprint(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def run_leak(client: httpx.Client, name: str) -> dict[str, Any]:
    done = client.post("/api/workflows/leak/execute", json={"parameters": {"name": name}})
    assert done.status_code == 200, done.text
    execution: dict[str, Any] = done.json()
    assert execution["status"] == "Success", execution["error"]
    return execution


@pytest.fixture(scope="module", autouse=True)
def stored(tenants: Tenants) -> None:
    with tenants.client("admin_a") as admin_a:
        assert admin_a.put("/api/secrets/api-token", json={"value": A_VALUE}).status_code == 200
        assert admin_a.put("/api/config/api-token", json={"value": {"region": "eu"}}).status_code == 200
    with tenants.platform() as platform:
        assert platform.put("/api/secrets/api-token?global=true", json={"value": GLOBAL_VALUE}).status_code == 200
        assert platform.put("/api/config/api-token?global=true", json={"value": {"region": "us"}}).status_code == 200


def test_each_org_reads_its_own_secret_or_the_global_one(tenants: Tenants) -> None:
    with tenants.client("member_a") as member_a:
        in_a = run_leak(member_a, "api-token")["result"]
    with tenants.client("member_b") as member_b:
        in_b = run_leak(member_b, "api-token")["result"]
    assert in_a["fingerprint"] == fingerprint(A_VALUE)
    assert in_a["config"] == {"region": "eu"}
    assert in_b["fingerprint"] == fingerprint(GLOBAL_VALUE)
    assert in_b["config"] == {"region": "us"}


def test_a_missing_secret_reads_as_none(tenants: Tenants) -> None:
    with tenants.client("member_a") as member_a:
        result = run_leak(member_a, "nothing-here")["result"]
    assert result == {"secret": None, "config": None, "fingerprint": None}


def test_secret_values_are_masked_in_result_logs_and_variables(tenants: Tenants) -> None:
    with tenants.client("member_a") as member_a:
        execution = run_leak(member_a, "api-token")
        execution_id = execution["execution_id"]
        logs = member_a.get(f"/api/executions/{execution_id}/logs").text
        variables = member_a.get(f"/api/executions/{execution_id}/variables").json()["variables"]
    assert execution["result"]["secret"] == "********"
    assert "the secret is ********" in logs
    assert "********" in str(variables["value"])
    for output in (str(execution), logs, str(variables)):
        assert A_VALUE not in output


def test_lists_never_return_values(tenants: Tenants) -> None:
    with tenants.client("admin_a") as admin_a:
        listed = admin_a.get("/api/secrets")
    assert listed.status_code == 200
    assert {(s["name"], s["org_id"]) for s in listed.json()} == {("api-token", tenants.org_a), ("api-token", None)}
    assert all("value" not in secret for secret in listed.json())
    assert A_VALUE not in listed.text
    assert GLOBAL_VALUE not in listed.text


def test_values_are_absent_from_the_raw_database_files(tenants: Tenants) -> None:
    database = Path(tenants.bifrost.settings.resolved_database_url.removeprefix("sqlite:///"))
    raw = b"".join(path.read_bytes() for path in database.parent.glob(f"{database.name}*"))
    assert b"api-token" in raw  # the names are there, so the files are the right ones
    assert A_VALUE.encode() not in raw
    assert GLOBAL_VALUE.encode() not in raw


def test_org_admins_cannot_touch_global_entries_or_other_orgs(tenants: Tenants) -> None:
    with tenants.client("admin_a") as admin_a:
        assert admin_a.put("/api/secrets/api-token?global=true", json={"value": "x" * 8}).status_code == 403
        assert admin_a.delete("/api/config/api-token?global=true").status_code == 403
        other_org = admin_a.put("/api/secrets/api-token", json={"value": "x" * 8}, headers={ORG_HEADER: tenants.org_b})
        assert other_org.status_code == 403
    with tenants.client("member_b") as member_b:
        assert member_b.get("/api/config/api-token").json()["value"] == {"region": "us"}


def test_secret_changes_are_audited_without_values(tenants: Tenants) -> None:
    with tenants.client("admin_a") as admin_a:
        audit = admin_a.get("/api/audit", params={"action": "secret.created"})
    assert audit.status_code == 200
    events = audit.json()["events"]
    assert [(e["target"], e["actor_email"], e["org_id"]) for e in events] == [
        ("api-token", "admin@a.test", tenants.org_a)
    ]
    assert A_VALUE not in audit.text
