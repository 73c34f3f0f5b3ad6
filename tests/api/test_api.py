"""The HTTP API against the real app (real uvicorn, NATS, SQLite or PostgreSQL): everything but workflow runs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, insert
from sqlmodel import Session, col, select

from bifrost._internal.protocol import ExecutionStatus
from bifrost.api.executions import MAX_LOG_PAGE, LogLine, LogPage
from control_plane.db.models import Execution, ExecutionLog, Organization, User
from control_plane.db.session import make_engine
from control_plane.security.api_keys import issue_api_key
from control_plane.security.tokens import TokenIssuer
from tests.api.conftest import ADMIN_KEY, SECRET_KEY, Bifrost, eventually, running_bifrost

GREET = '''
from bifrost import workflow

@workflow(category="demo", tags=["hello"])
async def greet(name: str, times: int = 1, loud: bool = False):
    """Say hello.

    Args:
        name: Who to greet.
    """
    return {"greeting": ("hello " * times) + name}
'''

REPORT = """
from bifrost import workflow

@workflow(endpoint_enabled=True)
async def report(day: str, pages: int = 1):
    return {"day": day, "pages": pages}
"""

BROKEN = "from bifrost import workflow\n\n@workflow\ndef half_written(:\n"


@pytest.fixture(scope="module")
def bifrost(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bifrost]:
    workflows = {"greet.py": GREET, "report.py": REPORT, "broken.py": BROKEN}
    with running_bifrost(tmp_path_factory.mktemp("api"), database_url, workflows) as running:
        yield running


@pytest.fixture(scope="module")
def db(bifrost: Bifrost) -> Iterator[Engine]:
    engine = make_engine(bifrost.settings.resolved_database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def admin(bifrost: Bifrost) -> Iterator[httpx.Client]:
    with bifrost.client() as client:
        yield client


@pytest.fixture(scope="module")
def other_org_key(db: Engine) -> str:
    """The key of an ordinary user of a second organization."""
    with Session(db, expire_on_commit=False) as session:
        org = Organization(name="Globex")
        session.add(org)
        session.flush()
        user = User(email="ops@globex.test", org_id=org.id)
        session.add(user)
        session.flush()
        key, _ = issue_api_key(session, user=user, name="ops")
        session.commit()
    return key


def admin_ids(db: Engine) -> tuple[str, str]:
    with Session(db) as session:
        admin = session.exec(select(User).where(col(User.is_platform_admin))).one()
        assert admin.org_id is not None
        return admin.id, admin.org_id


def add_execution(db: Engine, *, org_id: str, user_id: str, **fields: Any) -> Execution:
    """An execution recorded by the test. Unless it has ended, it is recorded as launched, so that no dispatcher
    launches a runner for it: the test plays its runner."""
    if not fields.get("status", ExecutionStatus.PENDING).is_terminal:
        fields.setdefault("backend", "played-by-the-test")
    execution = Execution(org_id=org_id, user_id=user_id, **{"workflow_name": "greet", **fields})
    with Session(db, expire_on_commit=False) as session:
        session.add(execution)
        session.commit()
    return execution


def test_health_readiness_and_metrics(bifrost: Bifrost) -> None:
    with bifrost.client(key=None) as anonymous:
        assert anonymous.get("/healthz").json() == {"status": "ok"}
        ready = anonymous.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["checks"] == {"database": True, "engine": True}
        metrics = anonymous.get("/metrics")
        assert metrics.status_code == 200
        assert "bifrost_executions_created_total" in metrics.text


def test_api_needs_a_valid_key(bifrost: Bifrost) -> None:
    token = TokenIssuer(SECRET_KEY.encode()).issue(
        execution_id="x", org_id=None, user_id="u", expires_at=datetime.now(UTC) + timedelta(hours=1)
    )
    with bifrost.client(key=None) as anonymous:
        missing = anonymous.get("/api/workflows")
        assert missing.status_code == 401
        assert "API key" in missing.json()["detail"]
        assert anonymous.get("/api/workflows", headers={"Authorization": "Bearer bfk_wrong"}).status_code == 401
        assert anonymous.get("/api/executions", headers={"Authorization": f"Bearer {token}"}).status_code == 401
        assert anonymous.get("/api/workflows", headers={"X-Bifrost-Key": ADMIN_KEY}).status_code == 200


def test_lists_and_describes_workflows(admin: httpx.Client) -> None:
    workflows = {w["name"]: w for w in admin.get("/api/workflows").json()}
    assert {"greet", "report"} <= set(workflows)
    greet = workflows["greet"]
    assert greet["category"] == "demo" and greet["tags"] == ["hello"]
    assert greet["execution_mode"] == "async"
    assert greet["parameters_schema"]["required"] == ["name"]
    assert [f["name"] for f in greet["form_fields"]] == ["name", "times", "loud"]
    assert workflows["report"]["endpoint_enabled"] is True
    assert admin.get("/api/workflows/report").json()["name"] == "report"


def test_unknown_workflow_is_a_404_naming_it(admin: httpx.Client) -> None:
    for response in (admin.get("/api/workflows/nope"), admin.post("/api/workflows/nope/execute", json={})):
        assert response.status_code == 404
        assert "'nope'" in response.json()["detail"]


def test_workspace_errors_name_the_broken_file(admin: httpx.Client) -> None:
    [problem] = [p for p in admin.get("/api/workspace/errors").json() if p["file"] == "broken.py"]
    assert problem["line"] == 4
    assert "syntax" in problem["message"]


def test_new_workspace_files_are_picked_up_while_running(bifrost: Bifrost, admin: httpx.Client) -> None:
    bifrost.write_workflow("later/added.py", GREET.replace("def greet", "def added_later"))
    found = eventually(
        lambda: admin.get("/api/workflows/added_later").status_code == 200, what="the new workflow to register"
    )
    assert found
    assert admin.get("/api/workflows/added_later").json()["file"] == "later/added.py"


def test_bad_parameters_get_one_422_error_per_field(admin: httpx.Client) -> None:
    response = admin.post("/api/workflows/greet/execute", json={"parameters": {"times": "many", "color": "red"}})
    assert response.status_code == 422
    errors = {tuple(e["loc"]): e for e in response.json()["detail"]}
    assert set(errors) == {("parameters", "name"), ("parameters", "times"), ("parameters", "color")}
    assert errors[("parameters", "name")]["type"] == "missing"
    assert errors[("parameters", "color")]["type"] == "unknown_parameter"


def test_malformed_body_is_a_422(admin: httpx.Client) -> None:
    response = admin.post("/api/workflows/greet/execute", json={"parameters": ["not", "an", "object"]})
    assert response.status_code == 422


def test_endpoints_serve_only_endpoint_enabled_workflows(admin: httpx.Client) -> None:
    response = admin.post("/api/endpoints/greet", json={"name": "x"})
    assert response.status_code == 404
    assert "endpoint-enabled" in response.json()["detail"]
    invalid = admin.post("/api/endpoints/report", params={"pages": "two"})
    assert invalid.status_code == 422
    assert {tuple(e["loc"]) for e in invalid.json()["detail"]} == {("parameters", "day"), ("parameters", "pages")}


def test_executions_list_newest_first_with_cursor_pages(db: Engine, admin: httpx.Client) -> None:
    user_id, org_id = admin_ids(db)
    base = datetime(2030, 1, 1, tzinfo=UTC)
    created = [
        add_execution(db, org_id=org_id, user_id=user_id, workflow_name="paged", created_at=base + timedelta(minutes=i))
        for i in range(7)
    ]
    seen: list[str] = []
    cursor = None
    while True:
        params = {"workflow": "paged", "limit": 3, **({"cursor": cursor} if cursor else {})}
        page = admin.get("/api/executions", params=params).json()
        seen.extend(e["execution_id"] for e in page["executions"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [e.id for e in reversed(created)]


def test_executions_filters(db: Engine, admin: httpx.Client) -> None:
    user_id, org_id = admin_ids(db)
    base = datetime(2031, 6, 1, tzinfo=UTC)
    done = add_execution(
        db, org_id=org_id, user_id=user_id, workflow_name="filtered", status=ExecutionStatus.SUCCESS, created_at=base
    )
    failed = add_execution(
        db,
        org_id=org_id,
        user_id=user_id,
        workflow_name="filtered",
        status=ExecutionStatus.FAILED,
        created_at=base + timedelta(hours=1),
    )

    def ids(**params: object) -> list[str]:
        response = admin.get("/api/executions", params={"workflow": "filtered", **params})
        assert response.status_code == 200, response.text
        return [e["execution_id"] for e in response.json()["executions"]]

    assert ids() == [failed.id, done.id]
    assert ids(status="Failed") == [failed.id]
    assert ids(since=(base + timedelta(minutes=30)).isoformat()) == [failed.id]
    assert ids(until=(base + timedelta(minutes=30)).isoformat()) == [done.id]
    assert ids(user=user_id, org=org_id) == [failed.id, done.id]
    assert ids(user="someone-else") == []
    assert admin.get("/api/executions", params={"status": "Finished"}).status_code == 422
    bad_cursor = admin.get("/api/executions", params={"cursor": "garbage!"})
    assert bad_cursor.status_code == 400
    assert "cursor" in bad_cursor.json()["detail"]


def test_users_see_only_their_organization(
    bifrost: Bifrost, db: Engine, admin: httpx.Client, other_org_key: str
) -> None:
    user_id, org_id = admin_ids(db)
    admins_run = add_execution(db, org_id=org_id, user_id=user_id, workflow_name="scoped")
    with bifrost.client(key=other_org_key) as outsider:
        assert outsider.get(f"/api/executions/{admins_run.id}").status_code == 404
        assert outsider.get(f"/api/executions/{admins_run.id}/logs").status_code == 404
        assert outsider.post(f"/api/executions/{admins_run.id}/cancel").status_code == 404
        assert outsider.get("/api/executions", params={"workflow": "scoped"}).json()["executions"] == []
        assert outsider.get("/api/executions", params={"workflow": "scoped", "org": org_id}).json()["executions"] == []
    assert admin.get(f"/api/executions/{admins_run.id}").json()["execution_id"] == admins_run.id


def test_execution_details_logs_variables_and_result(db: Engine, admin: httpx.Client) -> None:
    user_id, org_id = admin_ids(db)
    execution = add_execution(
        db,
        org_id=org_id,
        user_id=user_id,
        status=ExecutionStatus.FAILED,
        result={"partial": True},
        variables={"attempt": 3},
        error_type="ValueError",
        error_message="bad input",
        traceback="Traceback ...",
        log_count=5,
    )
    with Session(db) as session:
        for line in range(1, 6):
            session.add(
                ExecutionLog(
                    execution_id=execution.id,
                    line=line,
                    ts=datetime.now(UTC),
                    level="INFO",
                    logger="wf",
                    message=f"line {line}",
                )
            )
        session.commit()

    details = admin.get(f"/api/executions/{execution.id}").json()
    assert details["status"] == "Failed"
    assert details["error"] == {
        "type": "ValueError",
        "message": "bad input",
        "traceback": "Traceback ...",
        "runner_log_tail": None,
    }
    first = admin.get(f"/api/executions/{execution.id}/logs", params={"limit": 3}).json()
    assert [log["message"] for log in first["logs"]] == ["line 1", "line 2", "line 3"]
    assert set(first["logs"][0]) == {"line", "ts", "level", "logger", "message"}
    assert LogPage.model_validate(first).logs[0].ts.tzinfo is not None
    assert first["has_more"] is True
    rest = admin.get(f"/api/executions/{execution.id}/logs", params={"after": first["next_after"]}).json()
    assert [log["line"] for log in rest["logs"]] == [4, 5]
    assert rest["has_more"] is False
    assert admin.get(f"/api/executions/{execution.id}/variables").json()["variables"] == {"attempt": 3}
    assert admin.get(f"/api/executions/{execution.id}/result").json()["result"] == {"partial": True}
    cancel = admin.post(f"/api/executions/{execution.id}/cancel")
    assert cancel.status_code == 409
    assert "already finished" in cancel.json()["detail"]
    assert admin.get("/api/executions/no-such-id").status_code == 404


def test_log_lines_read_back_as_they_were_written(db: Engine, admin: httpx.Client) -> None:
    user_id, org_id = admin_ids(db)
    execution = add_execution(db, org_id=org_id, user_id=user_id, status=ExecutionStatus.SUCCESS, log_count=4)
    written = [
        LogLine(line=1, ts=datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC), level="INFO", logger="wf", message="whole"),
        LogLine(
            line=2,
            ts=datetime(2026, 3, 1, 12, 0, 0, 500, tzinfo=UTC),
            level="WARNING",
            logger="wf.part",
            message='quotes " and \\ back\nslash,\ttab, \x01 control, ünïcödé, 🙂',
        ),
        LogLine(line=3, ts=datetime(2026, 3, 1, 12, 0, 1, 120000, tzinfo=UTC), level="ERROR", logger="", message=""),
        LogLine(
            line=4, ts=datetime(2026, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), level="INFO", logger="wf", message="{}"
        ),
    ]
    with db.begin() as connection:
        connection.execute(
            insert(ExecutionLog), [{"execution_id": execution.id, **line.model_dump()} for line in written]
        )
    as_json = [line.model_dump(mode="json") for line in written]
    assert admin.get(f"/api/executions/{execution.id}/logs").json()["logs"] == as_json
    with admin.stream("GET", f"/api/executions/{execution.id}/stream") as stream:
        batches = [
            json.loads(line.removeprefix("data: ")) for line in stream.iter_lines() if line.startswith("data: [")
        ]
    assert batches == [as_json]


def test_a_log_page_holds_the_most_lines_unless_asked_for_fewer(db: Engine, admin: httpx.Client) -> None:
    user_id, org_id = admin_ids(db)
    lines = MAX_LOG_PAGE + 1
    execution = add_execution(db, org_id=org_id, user_id=user_id, status=ExecutionStatus.SUCCESS, log_count=lines)
    now = datetime.now(UTC)
    with db.begin() as connection:
        connection.execute(
            insert(ExecutionLog),
            [
                {"execution_id": execution.id, "line": line, "ts": now, "level": "INFO", "logger": "wf", "message": ""}
                for line in range(1, lines + 1)
            ],
        )
    path = f"/api/executions/{execution.id}/logs"
    first = admin.get(path).json()
    assert [log["line"] for log in first["logs"]] == list(range(1, MAX_LOG_PAGE + 1))
    assert (first["next_after"], first["has_more"]) == (MAX_LOG_PAGE, True)
    last = admin.get(path, params={"after": first["next_after"]}).json()
    assert ([log["line"] for log in last["logs"]], last["next_after"], last["has_more"]) == ([lines], lines, False)
    assert admin.get(path, params={"after": lines}).json() == {"logs": [], "next_after": lines, "has_more": False}
    too_many = admin.get(path, params={"limit": MAX_LOG_PAGE + 1})
    assert too_many.status_code == 422
    [problem] = too_many.json()["detail"]
    assert problem["loc"] == ["query", "limit"]
    assert problem["msg"] == f"Input should be less than or equal to {MAX_LOG_PAGE}"


def test_runner_routes_take_only_execution_tokens(bifrost: Bifrost, db: Engine) -> None:
    user_id, org_id = admin_ids(db)
    issuer = TokenIssuer(SECRET_KEY.encode())
    execution = add_execution(db, org_id=org_id, user_id=user_id, parameters={"name": "Ada"})
    token = issuer.issue(
        execution_id=execution.id, org_id=org_id, user_id=user_id, expires_at=datetime.now(UTC) + timedelta(hours=1)
    )
    expired = issuer.issue(
        execution_id=execution.id, org_id=org_id, user_id=user_id, expires_at=datetime.now(UTC) - timedelta(seconds=1)
    )
    forged = TokenIssuer(b"a key that is not the server's signing key").issue(
        execution_id=execution.id, org_id=org_id, user_id=user_id, expires_at=datetime.now(UTC) + timedelta(hours=1)
    )
    with bifrost.client(key=ADMIN_KEY) as with_api_key:
        assert with_api_key.get("/api/runner/payload").status_code == 401
    with bifrost.client(key=expired) as late:
        response = late.get("/api/runner/payload")
        assert response.status_code == 401
        assert "expired" in response.json()["detail"]
    with bifrost.client(key=forged) as forger:
        assert forger.get("/api/runner/payload").status_code == 401
    with bifrost.client(key=token) as runner:
        payload = runner.get("/api/runner/payload").json()
        assert payload["execution_id"] == execution.id
        assert (payload["workflow_name"], payload["file"], payload["function_name"]) == ("greet", "greet.py", "greet")
        assert payload["parameters"] == {"name": "Ada"}
        assert payload["user"]["id"] == user_id
        assert payload["organization"]["id"] == org_id
        assert payload["is_platform_admin"] is True
        assert payload["max_result_bytes"] == bifrost.settings.max_result_bytes
        assert runner.get(f"/api/runner/executions/{execution.id}").status_code == 404, "not its own child"
        assert runner.get("/api/runner/secrets/anything").status_code == 404
        assert runner.get("/api/workflows").status_code == 401, "a token is no API key"
        invalid = runner.post("/api/runner/workflows/greet/run", json={"parameters": {"times": 2}})
        assert invalid.status_code == 422
        assert runner.post("/api/runner/workflows/nope/run", json={"parameters": {}}).status_code == 404


def test_token_of_a_finished_execution_can_no_longer_act(bifrost: Bifrost, db: Engine) -> None:
    user_id, org_id = admin_ids(db)
    execution = add_execution(db, org_id=org_id, user_id=user_id, status=ExecutionStatus.SUCCESS)
    token = TokenIssuer(SECRET_KEY.encode()).issue(
        execution_id=execution.id, org_id=org_id, user_id=user_id, expires_at=datetime.now(UTC) + timedelta(hours=1)
    )
    with bifrost.client(key=token) as runner:
        assert runner.get("/api/runner/payload").status_code == 401
        started = runner.post("/api/runner/workflows/greet/run", json={"parameters": {"name": "x"}})
        assert started.status_code == 401
        assert "already finished" in started.json()["detail"]
