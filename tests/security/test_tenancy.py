"""Organizations, memberships and keys: who acts for which organization, and what each one sees."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlmodel import Session

from control_plane.api.dependencies import ORG_HEADER
from control_plane.db.models import ApiKey
from control_plane.db.session import make_engine
from tests.security.conftest import Tenants, create_user, make_key


def test_members_act_for_their_home_org_and_cannot_act_for_another(tenants: Tenants) -> None:
    with tenants.client("member_a") as member_a:
        assert member_a.get("/api/session").json()["org_id"] == tenants.org_a
        refused = member_a.get("/api/session", headers={ORG_HEADER: tenants.org_b})
        assert refused.status_code == 403
        assert tenants.org_b in refused.json()["detail"]


def test_a_user_of_two_orgs_chooses_per_request(tenants: Tenants) -> None:
    with tenants.platform() as platform:
        user_id = create_user(platform, tenants.org_a, "both@a.test", "member")
        added = platform.put(f"/api/orgs/{tenants.org_b}/members/{user_id}", json={"role": "org_admin"})
        assert added.status_code == 200, added.text
    key = make_key(tenants.bifrost.url, "both@a.test")
    with tenants.bifrost.client(key) as both:
        assert both.get("/api/session").json()["org_id"] == tenants.org_a
        assert both.get("/api/secrets").status_code == 403  # a plain member in A
        assert both.get("/api/secrets", headers={ORG_HEADER: tenants.org_b}).status_code == 200  # admin in B
        orgs = {org["id"] for org in both.get("/api/orgs").json()}
        assert orgs == {tenants.org_a, tenants.org_b}


def test_platform_admin_runs_a_workflow_for_an_org_and_the_context_says_so(tenants: Tenants) -> None:
    with tenants.platform(tenants.org_a) as platform:
        done = platform.post("/api/workflows/whoami/execute")
        assert done.status_code == 200, done.text
        assert done.json()["result"] == {"org_id": tenants.org_a, "user": "admin@bifrost.local"}
        assert done.json()["org_id"] == tenants.org_a
    with tenants.client("member_a") as member_a:
        assert done.json()["execution_id"] in {
            e["execution_id"] for e in member_a.get("/api/executions").json()["executions"]
        }
    with tenants.client("member_b") as member_b:
        assert member_b.get(f"/api/executions/{done.json()['execution_id']}").status_code == 404


def test_a_key_bound_to_an_org_cannot_switch(tenants: Tenants) -> None:
    with tenants.platform() as platform:
        created = platform.post("/api/keys", json={"name": "bound", "org_id": tenants.org_b})
        assert created.status_code == 201, created.text
    with tenants.bifrost.client(created.json()["key"]) as bound:
        assert bound.get("/api/session").json()["org_id"] == tenants.org_b
        assert bound.get("/api/session", headers={ORG_HEADER: tenants.org_a}).status_code == 403


def test_service_key_acts_with_its_role_and_stops_when_revoked(tenants: Tenants) -> None:
    with tenants.client("admin_a") as admin_a:
        created = admin_a.post("/api/keys/service", json={"name": "ticketing", "role": "member"})
        assert created.status_code == 201, created.text
        service = created.json()
        assert service["key"].startswith(service["prefix"])
        assert service["org_id"] == tenants.org_a
        listed = {key["id"]: key for key in admin_a.get("/api/keys").json()}
        assert "key" not in listed[service["id"]]
    with tenants.bifrost.client(service["key"]) as robot:
        ran = robot.post("/api/workflows/whoami/execute")
        assert ran.json()["result"]["org_id"] == tenants.org_a
        assert robot.get("/api/secrets").status_code == 403
    with tenants.client("admin_a") as admin_a:
        assert admin_a.get("/api/keys").json()[-1]["last_used_at"] is not None
        assert admin_a.delete(f"/api/keys/{service['id']}").status_code == 204
    with tenants.bifrost.client(service["key"]) as robot:
        refused = robot.get("/api/workflows")
        assert refused.status_code == 401
        assert "revoked" in refused.json()["detail"]


def test_key_expiry_is_enforced(tenants: Tenants) -> None:
    in_an_hour = datetime.now(UTC) + timedelta(hours=1)
    with tenants.client("member_a") as member_a:
        created = member_a.post("/api/keys", json={"name": "short", "expires_at": in_an_hour.isoformat()})
        assert created.status_code == 201, created.text
        past = member_a.post("/api/keys", json={"name": "past", "expires_at": "2020-01-01T00:00:00Z"})
        assert past.status_code == 422
        assert "expires_at" in past.text
    with tenants.bifrost.client(created.json()["key"]) as short:
        assert short.get("/api/session").status_code == 200
        engine = make_engine(tenants.bifrost.settings.resolved_database_url)
        with Session(engine) as session:
            key = session.get(ApiKey, created.json()["id"])
            assert key is not None
            key.expires_at = datetime.now(UTC) - timedelta(seconds=1)
            session.add(key)
            session.commit()
        engine.dispose()
        expired = short.get("/api/session")
        assert expired.status_code == 401
        assert "expired" in expired.json()["detail"]


def test_deactivated_user_loses_keys(tenants: Tenants) -> None:
    with tenants.platform(tenants.org_a) as platform:
        user_id = create_user(platform, tenants.org_a, "leaver@a.test", "member")
    key = make_key(tenants.bifrost.url, "leaver@a.test")
    with tenants.platform() as platform:
        assert platform.patch(f"/api/users/{user_id}", json={"is_active": False}).status_code == 200
    with tenants.bifrost.client(key) as leaver:
        assert leaver.get("/api/session").status_code == 401


def test_org_admins_cannot_make_platform_admins_or_edit_other_users(tenants: Tenants) -> None:
    with tenants.client("admin_a") as admin_a:
        refused = admin_a.post("/api/users", json={"email": "root@a.test", "is_platform_admin": True})
        assert refused.status_code == 403
        assert admin_a.patch(f"/api/users/{tenants.member_a}", json={"password": "x" * 20}).status_code == 403
        assert admin_a.patch(f"/api/users/{tenants.member_b}", json={"name": "B"}).status_code == 404


def test_removed_member_loses_access_to_the_org(tenants: Tenants) -> None:
    with tenants.platform(tenants.org_a) as platform:
        user_id = create_user(platform, tenants.org_a, "moved@a.test", "member")
    key = make_key(tenants.bifrost.url, "moved@a.test")
    with tenants.bifrost.client(key) as moved:
        in_a = moved.post("/api/workflows/whoami/execute").json()["execution_id"]
    with tenants.client("admin_a") as admin_a:
        assert admin_a.delete(f"/api/orgs/{tenants.org_a}/members/{user_id}").status_code == 204
    with tenants.bifrost.client(key) as moved:
        assert moved.get("/api/session").json()["org_id"] is None
        assert moved.get("/api/config", headers={ORG_HEADER: tenants.org_a}).status_code == 403
        assert moved.get(f"/api/executions/{in_a}").status_code == 404
        assert moved.get("/api/executions").json()["executions"] == []
        assert moved.post("/api/workflows/whoami/execute").status_code == 403


def test_bad_input_is_named(tenants: Tenants) -> None:
    with tenants.client("admin_a") as admin_a:
        bad_email = admin_a.post("/api/users", json={"email": "not-an-email"})
        assert bad_email.status_code == 422
        assert "email" in bad_email.text
        short = admin_a.post("/api/users", json={"email": "short@a.test", "password": "short"})
        assert short.status_code == 422
        assert "password" in short.text
        bad_name = admin_a.put("/api/secrets/has space", json={"value": "v"})
        assert bad_name.status_code == 422
        duplicate = admin_a.post("/api/users", json={"email": "member@a.test"})
        assert duplicate.status_code == 409
    with tenants.platform() as platform:
        unknown_org = platform.get("/api/session", headers={ORG_HEADER: "no-such-org"})
        assert unknown_org.status_code == 404
        assert "no-such-org" in unknown_org.text


def test_a_workflow_restricted_to_org_admins(tenants: Tenants) -> None:
    with tenants.platform() as platform:
        restricted = platform.put("/api/workflows/ping/access", json={"roles": ["org_admin"]})
        assert restricted.status_code == 200, restricted.text
    try:
        with tenants.client("member_a") as member_a:
            refused = member_a.post("/api/workflows/ping/execute")
            assert refused.status_code == 403
            assert "ping" in refused.json()["detail"]
            assert member_a.post("/api/endpoints/ping").status_code == 403
            # Refused before its body is read, let alone parsed.
            unread = member_a.post(
                "/api/workflows/ping/execute", content=b"{not json", headers={"Content-Type": "application/json"}
            )
            assert unread.status_code == 403
            assert member_a.get("/api/workflows/ping/access").json()["roles"] == ["org_admin"]
        with tenants.client("admin_a") as admin_a:
            assert admin_a.post("/api/workflows/ping/execute").status_code == 200
            assert admin_a.put("/api/workflows/ping/access", json={"roles": ["member"]}).status_code == 403
    finally:
        with tenants.platform() as platform:
            assert platform.delete("/api/workflows/ping/access").status_code == 204
    with tenants.client("member_a") as member_a:
        assert member_a.post("/api/workflows/ping/execute").status_code == 200
    with tenants.platform() as platform:
        unknown_role = platform.put("/api/workflows/ping/access", json={"roles": ["owner"]})
        assert unknown_role.status_code == 422
        audit = platform.get("/api/audit", params={"all_orgs": True, "action": "workflow_access.changed"}).json()
        assert [event["target"] for event in audit["events"]] == ["ping"]


def test_runs_for_another_org_are_audited(tenants: Tenants) -> None:
    with tenants.platform(tenants.org_b) as platform:
        assert platform.post("/api/workflows/whoami/execute").json()["result"]["org_id"] == tenants.org_b
        events = platform.get("/api/audit", params={"action": "execution.started_for_org"}).json()["events"]
    assert [(e["org_id"], e["target"], e["actor_email"]) for e in events] == [
        (tenants.org_b, "whoami", "admin@bifrost.local")
    ]


def test_the_last_platform_admin_cannot_be_demoted(tenants: Tenants) -> None:
    with tenants.platform() as platform:
        me = platform.get("/api/users/me").json()
        refused = platform.patch(f"/api/users/{me['id']}", json={"is_platform_admin": False})
        assert refused.status_code == 409
        assert "last active platform admin" in refused.json()["detail"]
        assert platform.get("/api/users/me").json()["is_platform_admin"] is True
