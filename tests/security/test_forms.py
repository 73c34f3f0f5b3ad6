"""Forms and data providers across two organizations: who sees, uses and changes which form, and whose options
a data provider call gets."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from tests.security.conftest import Tenants

FIELDS = [{"name": "text", "data_provider": {"name": "teams"}}]


def make_form(client: httpx.Client, **form: Any) -> dict[str, Any]:
    made = client.post("/api/forms", json={"name": f"Form {uuid.uuid4().hex[:8]}", "workflow": "ping", **form})
    assert made.status_code == 201, made.text
    created: dict[str, Any] = made.json()
    return created


def listed(client: httpx.Client) -> set[str]:
    answer = client.get("/api/forms")
    assert answer.status_code == 200, answer.text
    return {form["id"] for form in answer.json()}


def test_an_organizations_form_does_not_exist_for_another(tenants: Tenants) -> None:
    with tenants.client("admin_a") as admin_a:
        form = make_form(admin_a, fields=FIELDS)
    assert form["org_id"] == tenants.org_a
    with tenants.client("member_b") as member_b:
        assert form["id"] not in listed(member_b)
        for answer in (
            member_b.get(f"/api/forms/{form['id']}"),
            member_b.get(f"/api/forms/{form['id']}/schema"),
            member_b.post(f"/api/forms/{form['id']}/submit", json={"values": {"text": tenants.org_b}}),
            member_b.post(f"/api/forms/{form['id']}/fields/text/options", json={"values": {}}),
            member_b.put(f"/api/forms/{form['id']}", json={"name": "Taken", "workflow": "ping"}),
            member_b.delete(f"/api/forms/{form['id']}"),
        ):
            assert answer.status_code == 404, answer.text
            assert tenants.org_a not in answer.text
    with tenants.client("member_a") as member_a:
        assert form["id"] in listed(member_a)
        done = member_a.post(f"/api/forms/{form['id']}/submit", json={"values": {"text": tenants.org_a}})
        assert done.status_code == 200, done.text
        assert (done.json()["org_id"], done.json()["user_id"]) == (tenants.org_a, tenants.member_a)
        assert member_a.put(f"/api/forms/{form['id']}", json={"name": "Mine", "workflow": "ping"}).status_code == 403
        assert member_a.delete(f"/api/forms/{form['id']}").status_code == 403
        assert member_a.post("/api/forms", json={"name": "By a member", "workflow": "ping"}).status_code == 403
    # Platform admins list the forms of the organization they act for, and reach any form.
    with tenants.platform(tenants.org_b) as platform_in_b:
        assert form["id"] not in listed(platform_in_b)
        assert platform_in_b.get(f"/api/forms/{form['id']}").status_code == 200
    with tenants.platform(tenants.org_a) as platform_in_a:
        assert form["id"] in listed(platform_in_a)


def test_a_form_for_some_roles_is_refused_to_the_others(tenants: Tenants) -> None:
    with tenants.client("admin_a") as admin_a:
        admins_only = make_form(admin_a, access="roles", roles=["org_admin"])
        platform_only = make_form(admin_a, access="platform_admins")
        assert admins_only["id"] in listed(admin_a)
        assert admin_a.post(f"/api/forms/{admins_only['id']}/submit", json={"values": {}}).status_code == 200
        # Its organization's admins manage a form they may not use themselves.
        assert platform_only["id"] in listed(admin_a)
        refused = admin_a.post(f"/api/forms/{platform_only['id']}/submit", json={"values": {}})
        assert refused.status_code == 403
        assert "platform admins only" in refused.json()["detail"]
    with tenants.client("member_a") as member_a:
        assert {admins_only["id"], platform_only["id"]} & listed(member_a) == set()
        refused = member_a.post(f"/api/forms/{admins_only['id']}/submit", json={"values": {}})
        assert refused.status_code == 403
        assert "for the roles org_admin only" in refused.json()["detail"]
        assert member_a.get(f"/api/forms/{admins_only['id']}").status_code == 403
    with tenants.platform(tenants.org_a) as platform:
        assert platform.post(f"/api/forms/{platform_only['id']}/submit", json={"values": {}}).status_code == 200


def test_a_global_form_serves_every_organization_in_its_own_name(tenants: Tenants) -> None:
    with tenants.platform(tenants.org_a) as platform:
        form = make_form(platform, is_global=True, fields=FIELDS)
    assert form["org_id"] is None
    for caller, org in (("member_a", tenants.org_a), ("member_b", tenants.org_b)):
        with tenants.client(caller) as client:
            assert form["id"] in listed(client)
            options = client.post(f"/api/forms/{form['id']}/fields/text/options", json={"values": {}}).json()
            assert [option["value"] for option in options["options"]] == [org]
            done = client.post(f"/api/forms/{form['id']}/submit", json={"values": {"text": org}})
            assert done.status_code == 200, done.text
            assert done.json()["org_id"] == org and done.json()["result"] == {"text": org}
    with tenants.client("member_b") as member_b:
        # The one choice is the caller's own organization: another's is refused.
        wrong = member_b.post(f"/api/forms/{form['id']}/submit", json={"values": {"text": tenants.org_a}})
        assert wrong.status_code == 422
        assert wrong.json()["detail"][0]["loc"] == ["values", "text"]
    with tenants.client("admin_a") as admin_a:
        assert admin_a.put(f"/api/forms/{form['id']}", json={"name": "Ours", "workflow": "ping"}).status_code == 403
        assert admin_a.post("/api/forms", json={"name": "G", "workflow": "ping", "is_global": True}).status_code == 403


def test_a_providers_options_are_never_reused_across_organizations(tenants: Tenants) -> None:
    inputs = {"inputs": {"prefix": "team-"}}
    with tenants.client("member_a") as member_a:
        first_a = member_a.post("/api/data-providers/teams/options", json=inputs).json()
        again_a = member_a.post("/api/data-providers/teams/options", json=inputs).json()
    with tenants.client("member_b") as member_b:
        first_b = member_b.post("/api/data-providers/teams/options", json=inputs).json()
        call_a = member_b.get(f"/api/executions/{first_a['execution_id']}")
    assert [option["value"] for option in first_a["options"]] == [f"team-{tenants.org_a}"]
    assert again_a["cached"] is True
    assert first_b["cached"] is False
    assert [option["value"] for option in first_b["options"]] == [f"team-{tenants.org_b}"]
    assert call_a.status_code == 404
