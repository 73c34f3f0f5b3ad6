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


def changes_of(platform: httpx.Client, target: str) -> list[tuple[str, str | None, str | None, str | None]]:
    """(action, org_id, actor_user_id, ip) of every audited change to `target`, newest first."""
    events = platform.get("/api/audit", params={"all_orgs": True}).json()["events"]
    return [(e["action"], e["org_id"], e["actor_user_id"], e["ip"]) for e in events if e["target"] == target]


def test_replacing_a_secret_keeps_one_entry_and_workflows_read_the_new_value(tenants: Tenants) -> None:
    first, second = "first-value-5a1d0c", "second-value-e27b94"
    with tenants.platform(tenants.org_b) as platform:
        created = platform.put("/api/secrets/b-rotating", json={"value": first})
        replaced = platform.put("/api/secrets/b-rotating", json={"value": second})
        listed = platform.get("/api/secrets").json()
        changes = changes_of(platform, "b-rotating")
        audit_text = platform.get("/api/audit", params={"all_orgs": True}).text
    assert created.status_code == replaced.status_code == 200
    assert [(s["name"], s["org_id"]) for s in listed if s["name"] == "b-rotating"] == [("b-rotating", tenants.org_b)]
    actor = replaced.json()["updated_by"]
    assert changes == [
        ("secret.updated", tenants.org_b, actor, "127.0.0.1"),
        ("secret.created", tenants.org_b, actor, "127.0.0.1"),
    ]
    assert first not in audit_text and second not in audit_text
    with tenants.client("member_b") as member_b:
        assert run_leak(member_b, "b-rotating")["result"]["fingerprint"] == fingerprint(second)


def test_a_deleted_secret_is_audited_gone_from_workflows_and_a_second_delete_is_404(tenants: Tenants) -> None:
    with tenants.platform(tenants.org_b) as platform:
        actor = platform.put("/api/secrets/b-gone", json={"value": "short-lived-value"}).json()["updated_by"]
        deleted = platform.delete("/api/secrets/b-gone")
        again = platform.delete("/api/secrets/b-gone")
        listed = platform.get("/api/secrets").json()
        changes = changes_of(platform, "b-gone")
    assert deleted.status_code == 204
    assert again.status_code == 404
    assert again.json()["detail"] == "no secret named 'b-gone' here"
    assert "b-gone" not in {s["name"] for s in listed}
    assert changes == [
        ("secret.deleted", tenants.org_b, actor, "127.0.0.1"),
        ("secret.created", tenants.org_b, actor, "127.0.0.1"),
    ]
    with tenants.client("member_b") as member_b:
        assert run_leak(member_b, "b-gone")["result"]["secret"] is None


def test_config_writes_replace_delete_only_their_scope_and_are_audited(tenants: Tenants) -> None:
    with tenants.platform(tenants.org_b) as platform:
        assert platform.put("/api/config/b-setting?global=true", json={"value": "everyone"}).status_code == 200
        assert platform.put("/api/config/b-setting", json={"value": [1]}).status_code == 200
        replaced = platform.put("/api/config/b-setting", json={"value": {"retries": 2}})
        with tenants.client("member_b") as member_b:
            own = member_b.get("/api/config/b-setting").json()
            assert platform.delete("/api/config/b-setting").status_code == 204
            again = platform.delete("/api/config/b-setting")
            fallback = member_b.get("/api/config/b-setting").json()
            assert platform.delete("/api/config/b-setting?global=true").status_code == 204
            missing = member_b.get("/api/config/b-setting")
        changes = [(action, org_id) for action, org_id, _, _ in changes_of(platform, "b-setting")]
    assert (replaced.status_code, replaced.json()["value"], replaced.json()["org_id"]) == (
        200,
        {"retries": 2},
        tenants.org_b,
    )
    assert (own["value"], own["org_id"]) == ({"retries": 2}, tenants.org_b)
    assert (fallback["value"], fallback["org_id"]) == ("everyone", None)
    assert missing.status_code == 404
    assert again.status_code == 404
    assert again.json()["detail"] == "no config entry named 'b-setting' here"
    assert changes == [
        ("config.deleted", None),
        ("config.deleted", tenants.org_b),
        ("config.updated", tenants.org_b),
        ("config.created", tenants.org_b),
        ("config.created", None),
    ]
