"""Schedules over HTTP against the real app (real uvicorn, NATS, runners, SQLite or PostgreSQL): what is refused
and why, who manages which schedules, the schedule `@workflow(schedule=...)` makes, and a real fire."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest

from control_plane.schedules.owners import owner_email
from control_plane.security.authentication import ORG_HEADER
from tests.api.conftest import Bifrost, MovableClock, eventually, running_bifrost
from tests.security.conftest import create_org, create_user, make_key

WORKFLOWS = '''
from bifrost import context, workflow


@workflow
def report(team: str, days: int = 7):
    """A report for a team."""
    return {"team": team, "days": days}


@workflow(schedule="* * * * *")
def heartbeat():
    """Runs every minute."""
    return {"user": context.user.email, "org": context.org_id}
'''


@pytest.fixture(scope="module")
def clock() -> MovableClock:
    return MovableClock()


@pytest.fixture(scope="module")
def bifrost(database_url: str, tmp_path_factory: pytest.TempPathFactory, clock: MovableClock) -> Iterator[Bifrost]:
    tmp = tmp_path_factory.mktemp("schedules")
    with running_bifrost(tmp, database_url, {"flows.py": WORKFLOWS}, clock=clock) as running:
        with running.client() as admin:
            eventually(lambda: admin.get("/api/workflows/heartbeat").status_code == 200, what="the workflows")
        yield running


@pytest.fixture(scope="module")
def org_admins(bifrost: Bifrost) -> dict[str, tuple[str, str]]:
    """An admin of each of two organizations: organization id and API key."""
    admins = {}
    with bifrost.client() as platform:
        for name in ("North", "South"):
            org = create_org(platform, name)
            create_user(platform, org, f"admin@{name.lower()}.test", "org_admin")
            admins[name] = (org, make_key(bifrost.url, f"admin@{name.lower()}.test"))
    return admins


@pytest.fixture
def admin(bifrost: Bifrost) -> Iterator[httpx.Client]:
    with bifrost.client() as client:
        yield client


def client_of(bifrost: Bifrost, key: str) -> httpx.Client:
    return bifrost.client(key)


def schedule_body(**fields: Any) -> dict[str, Any]:
    return {"workflow_name": "report", "parameters": {"team": "ops"}, "cron": "0 9 * * 1-5", **fields}


def test_a_schedule_of_an_organization(bifrost: Bifrost, org_admins: dict[str, tuple[str, str]]) -> None:
    org, key = org_admins["North"]
    with client_of(bifrost, key) as north:
        made = north.post("/api/schedules", json=schedule_body(timezone="Europe/Berlin", description="weekdays"))
        assert made.status_code == 201, made.text
        schedule = made.json()
        assert schedule["org_id"] == org
        assert (schedule["source"], schedule["enabled"], schedule["needs_attention"]) == ("api", True, None)
        assert (schedule["overlap_policy"], schedule["catch_up_policy"]) == ("skip", "latest")
        times = [datetime.fromisoformat(moment) for moment in schedule["next_fire_times"]]
        assert len(times) == 5 and times == sorted(times)
        assert all(moment.weekday() < 5 and moment.utcoffset() is not None for moment in times)
        assert schedule["next_fire_at"] == schedule["next_fire_times"][0]
        assert north.get(f"/api/schedules/{schedule['id']}").json()["last_runs"] == []

        changed = north.patch(f"/api/schedules/{schedule['id']}", json={"enabled": False, "overlap_policy": "queue"})
        assert changed.status_code == 200, changed.text
        assert (changed.json()["enabled"], changed.json()["next_fire_at"]) == (False, None)
        assert changed.json()["overlap_policy"] == "queue"

        audit = north.get("/api/audit").json()["events"]
        actions = [event["action"] for event in audit if event["target"] == schedule["id"]]
        assert actions == ["schedule.updated", "schedule.created"]

    # The other organization's admin does not see it; a platform admin does.
    with client_of(bifrost, org_admins["South"][1]) as south:
        assert schedule["id"] not in [found["id"] for found in south.get("/api/schedules").json()]
        assert south.get(f"/api/schedules/{schedule['id']}").status_code == 404
        assert south.patch(f"/api/schedules/{schedule['id']}", json={"enabled": True}).status_code == 404
        assert south.delete(f"/api/schedules/{schedule['id']}").status_code == 404
    with bifrost.client() as platform:
        assert schedule["id"] in [found["id"] for found in platform.get("/api/schedules").json()]

    with client_of(bifrost, key) as north:
        assert north.delete(f"/api/schedules/{schedule['id']}").status_code == 204
        assert north.get(f"/api/schedules/{schedule['id']}").status_code == 404


@pytest.mark.parametrize(
    ("body", "location", "message"),
    [
        (schedule_body(cron="every morning"), ["body", "cron"], "not a valid cron expression"),
        (schedule_body(cron="0 9 * * * *"), ["body", "cron"], "expected five fields"),
        (schedule_body(cron="0 9 30 2 *"), ["body", "cron"], "names no date that exists"),
        (schedule_body(timezone="Europe/Atlantis"), ["body", "timezone"], "unknown time zone 'Europe/Atlantis'"),
        (schedule_body(parameters={}), ["body", "parameters", "team"], "Field required"),
        (schedule_body(parameters={"team": "ops", "days": "many"}), ["body", "parameters", "days"], "integer"),
        (
            schedule_body(parameters={"team": "ops", "colour": "red"}),
            ["body", "parameters", "colour"],
            "unknown parameter",
        ),
        (schedule_body(overlap_policy="sometimes"), ["body", "overlap_policy"], "'skip', 'queue' or 'allow'"),
        (schedule_body(catch_up_policy="all"), ["body", "catch_up_policy"], "'skip' or 'latest'"),
    ],
)
def test_bad_schedules_are_refused_naming_the_field(
    admin: httpx.Client, body: dict[str, Any], location: list[str], message: str
) -> None:
    before = admin.get("/api/schedules").json()
    refused = admin.post("/api/schedules", json=body)
    assert refused.status_code == 422, refused.text
    [error] = refused.json()["detail"]
    assert error["loc"] == location
    assert message in error["msg"]
    assert admin.get("/api/schedules").json() == before


def test_bad_changes_are_refused_and_change_nothing(admin: httpx.Client) -> None:
    made = admin.post("/api/schedules", json=schedule_body()).json()
    for body, location in (
        ({"cron": "61 * * * *"}, ["body", "cron"]),
        ({"enabled": None}, ["body", "enabled"]),
        ({"timezone": "Nowhere"}, ["body", "timezone"]),
        ({"parameters": {"days": 3}}, ["body", "parameters", "team"]),
        ({"colour": "red"}, ["body", "colour"]),
    ):
        refused = admin.patch(f"/api/schedules/{made['id']}", json=body)
        assert refused.status_code == 422, refused.text
        assert refused.json()["detail"][0]["loc"] == location
    unknown = admin.patch(f"/api/schedules/{made['id']}", json={"workflow_name": "nope"})
    assert (unknown.status_code, unknown.json()["detail"]) == (404, "no workflow named 'nope' in the workspace")
    after = admin.get(f"/api/schedules/{made['id']}").json()
    assert {key: after[key] for key in ("cron", "timezone", "parameters", "enabled", "workflow_name")} == {
        "cron": "0 9 * * 1-5",
        "timezone": "UTC",
        "parameters": {"team": "ops"},
        "enabled": True,
        "workflow_name": "report",
    }
    assert admin.post("/api/schedules", json=schedule_body(workflow_name="nope")).status_code == 404
    assert admin.delete(f"/api/schedules/{made['id']}").status_code == 204


def test_a_member_cannot_manage_schedules(bifrost: Bifrost, org_admins: dict[str, tuple[str, str]]) -> None:
    org, _key = org_admins["North"]
    with bifrost.client() as platform:
        create_user(platform, org, "member@north.test", "member")
    with client_of(bifrost, make_key(bifrost.url, "member@north.test")) as member:
        assert member.get("/api/schedules").status_code == 403
        assert member.post("/api/schedules", json=schedule_body()).status_code == 403
    with client_of(bifrost, org_admins["North"][1]) as north:
        global_one = north.post("/api/schedules", json=schedule_body(), params={"global": "true"})
        assert global_one.status_code == 403


def test_the_schedule_of_a_decorator_runs_every_minute_as_the_scheduler(
    bifrost: Bifrost, admin: httpx.Client, clock: MovableClock
) -> None:
    def decorators() -> list[dict[str, Any]] | None:
        found = [schedule for schedule in admin.get("/api/schedules").json() if schedule["source"] == "decorator"]
        return found or None

    [heartbeat] = eventually(decorators, what="the schedule of @workflow(schedule=...)")
    assert (heartbeat["workflow_name"], heartbeat["cron"], heartbeat["org_id"]) == ("heartbeat", "* * * * *", None)
    refused = admin.patch(f"/api/schedules/{heartbeat['id']}", json={"cron": "0 * * * *"})
    assert refused.status_code == 409
    assert "sets its cron: change them there" in refused.json()["detail"]
    assert admin.delete(f"/api/schedules/{heartbeat['id']}").status_code == 409

    def ran() -> dict[str, Any] | None:
        runs = admin.get(f"/api/schedules/{heartbeat['id']}").json()["last_runs"]
        finished = [run for run in runs if run["execution_status"] == "Success"]
        return finished[0] if finished else None

    # Its next minute comes at once: the scheduler's clock is moved to it.
    clock.move_to(datetime.fromisoformat(heartbeat["next_fire_at"]))
    run = eventually(ran, within=60, what="a fire of the schedule, run to its end")
    assert run["outcome"] == "started"
    execution = admin.get(f"/api/executions/{run['execution_id']}").json()
    assert (execution["trigger"], execution["schedule_id"]) == ("schedule", heartbeat["id"])
    assert execution["result"] == {"user": owner_email(None), "org": None}
    assert execution["user_id"] == heartbeat["owner_user_id"]

    assert admin.patch(f"/api/schedules/{heartbeat['id']}", json={"enabled": False}).json()["enabled"] is False


def test_the_header_names_the_organization_a_platform_admin_schedules_for(
    admin: httpx.Client, org_admins: dict[str, tuple[str, str]]
) -> None:
    org, _key = org_admins["South"]
    made = admin.post("/api/schedules", json=schedule_body(), headers={ORG_HEADER: org})
    assert made.status_code == 201, made.text
    assert made.json()["org_id"] == org
    global_one = admin.post("/api/schedules", json=schedule_body(), params={"global": "true"})
    assert global_one.json()["org_id"] is None
