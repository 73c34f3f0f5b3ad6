"""Bad input never breaks anyone else: whatever one caller sends is refused before anything is written unless
it can be stored and read back, bodies are read only from authenticated callers and only up to a limit, and
paging numbers out of range are bad input. On SQLite and PostgreSQL."""

from __future__ import annotations

import json
import socket
from typing import Any
from urllib.parse import urlsplit

import pytest

from control_plane.db.models import MAX_LOG_LINE, MAX_ROW_ID
from tests.security.conftest import PASSWORD, Tenants, assert_every_list_answers, nested, send_json


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def database_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind


POISONS: dict[str, Any] = {
    "lone surrogate": "\ud800",
    "NUL character": "nul\x00text",
    "surrogate key": {"\udfff": 1},
    "deep nesting": nested(600),
    "not a number": float("nan"),
}

# (caller, method, path, body with `{poison}` where the poison goes, the field the answer must name)
WRITES: list[tuple[str, str, str, Any, str]] = [
    ("member_a", "POST", "/api/workflows/ping/execute", {"parameters": {"text": "{poison}"}}, "text"),
    ("member_a", "POST", "/api/workflows/ping/execute?sync=false", {"parameters": {"text": "{poison}"}}, "text"),
    ("member_a", "POST", "/api/endpoints/ping", {"text": "{poison}"}, "text"),
    ("member_a", "POST", "/api/keys", {"name": "{poison}"}, "name"),
    ("member_a", "PATCH", "/api/users/{member_a}", {"name": "{poison}"}, "name"),
    ("admin_a", "PUT", "/api/config/poisoned", {"value": "{poison}"}, "value"),
    ("admin_a", "PUT", "/api/secrets/poisoned", {"value": "{poison}"}, "value"),
    ("admin_a", "POST", "/api/users", {"email": "p@a.test", "password": PASSWORD, "name": "{poison}"}, "name"),
    ("admin_a", "POST", "/api/keys/service", {"name": "{poison}"}, "name"),
    ("admin_a", "PUT", "/api/orgs/{org_a}/members/{member_a}", {"role": "{poison}"}, "role"),
    ("platform", "POST", "/api/orgs", {"name": "{poison}"}, "name"),
    ("platform", "PATCH", "/api/orgs/{org_a}", {"name": "{poison}"}, "name"),
    ("platform", "PUT", "/api/config/poisoned?global=true", {"value": "{poison}"}, "value"),
    ("platform", "PUT", "/api/workflows/ping/access", {"roles": ["{poison}"]}, "roles"),
    ("platform", "POST", "/api/workspace/sync", {"files": {"p.txt": "{poison}"}, "replace_all": False}, "p.txt"),
]


def poisoned(template: Any, poison: Any) -> Any:
    if template == "{poison}":
        return poison
    if isinstance(template, dict):
        return {key: poisoned(value, poison) for key, value in template.items()}
    if isinstance(template, list):
        return [poisoned(value, poison) for value in template]
    return template


@pytest.mark.parametrize("poison", list(POISONS), ids=list(POISONS))
def test_values_that_cannot_be_stored_and_read_back_are_refused(tenants: Tenants, poison: str) -> None:
    names = {"member_a": tenants.member_a, "org_a": tenants.org_a}
    for caller, method, path, body, field in WRITES:
        with tenants.client(caller, tenants.org_a if caller == "platform" else None) as client:
            answer = send_json(client, method, path.format(**names), poisoned(body, POISONS[poison]))
        assert answer.status_code == 422, f"{caller} {method} {path}: {answer.status_code} {answer.text[:300]}"
        assert field in json.dumps(answer.json()["detail"]), f"{method} {path} does not name {field}: {answer.text}"
    assert_every_list_answers(tenants)


def test_an_expiry_past_what_can_be_read_back_is_refused(tenants: Tenants) -> None:
    # 10000-01-01 in UTC: PostgreSQL stores it, Python cannot read it back.
    beyond = {"name": "far", "expires_at": "9999-12-31T23:59:59-23:59"}
    with tenants.client("member_a") as member_a, tenants.client("admin_a") as admin_a:
        for answer in (member_a.post("/api/keys", json=beyond), admin_a.post("/api/keys/service", json=beyond)):
            assert answer.status_code == 422, answer.text
            assert "expires_at" in answer.json()["detail"]
    assert_every_list_answers(tenants)


def test_values_within_the_limits_are_stored_and_read_back(tenants: Tenants) -> None:
    depth = tenants.bifrost.settings.max_json_depth
    value = {"deep": nested(depth - 2), "text": "🦄 ünïcode \t tab", "big": 10**40}
    with tenants.client("admin_a") as admin_a:
        stored = admin_a.put("/api/config/within-limits", json={"value": value})
        assert stored.status_code == 200, stored.text
        assert admin_a.get("/api/config/within-limits").json()["value"] == value
        too_deep = admin_a.put("/api/config/too-deep", json={"value": nested(depth)})
    assert too_deep.status_code == 422
    assert too_deep.json()["detail"][0]["loc"][:2] == ["body", "value"]
    assert_every_list_answers(tenants)


def raw_request(url: str, head: str) -> socket.socket:
    parts = urlsplit(url)
    connection = socket.create_connection((parts.hostname, parts.port), timeout=60)
    connection.sendall(head.encode())
    return connection


def status_of(connection: socket.socket) -> int:
    """The status of the answer, read while the request body is still unfinished."""
    answer = b""
    while b"\r\n" not in answer:
        chunk = connection.recv(4096)
        assert chunk, f"the connection closed without an answer: {answer!r}"
        answer += chunk
    return int(answer.split(b" ", 2)[1])


def headers(tenants: Tenants, caller: str) -> str:
    authorization = f"Authorization: Bearer {tenants.keys[caller]}\r\n" if caller != "anonymous" else ""
    return f"Host: bifrost\r\nContent-Type: application/json\r\n{authorization}"


def test_anonymous_bodies_are_not_read(tenants: Tenants) -> None:
    with tenants.client("anonymous") as anonymous:
        malformed = anonymous.post("/api/orgs", content=b"{not json", headers={"Content-Type": "application/json"})
        wrong_shape = anonymous.post("/api/keys", json={"name": ["not", "a", "name"]})
        wrong_key = anonymous.post(
            "/api/orgs", content=b"{not json", headers={"Authorization": "Bearer bfk_wrong", "Content-Type": "x"}
        )
    assert (malformed.status_code, wrong_shape.status_code, wrong_key.status_code) == (401, 401, 401)
    # A large body announced, none sent: the answer comes without waiting for it.
    for method, path, length in (
        ("POST", "/api/orgs", 200 * 1024 * 1024),
        ("POST", "/api/runner/workflows/ping/run", 200 * 1024 * 1024),
        ("PUT", "/api/workspace/files/big.txt", tenants.bifrost.settings.max_upload_bytes),
    ):
        head = f"{method} {path} HTTP/1.1\r\n{headers(tenants, 'anonymous')}Content-Length: {length}\r\n\r\n"
        with raw_request(tenants.bifrost.url, head) as connection:
            assert status_of(connection) == 401, path


def send_chunks(connection: socket.socket, total: int) -> None:
    """`total` bytes of a chunked body, without its final chunk: the request is left unfinished."""
    chunk = b"[" + b" " * (64 * 1024 - 2) + b"]"
    sent = 0
    while sent < total:
        connection.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        sent += len(chunk)


@pytest.mark.parametrize(
    ("caller", "method", "path", "expected"),
    [
        ("anonymous", "POST", "/api/keys", 401),
        ("member_a", "POST", "/api/keys", 413),
        ("platform", "PUT", "/api/workspace/files/chunked.txt", 413),
    ],
)
def test_a_chunked_body_past_the_limit_is_refused_before_it_ends(
    tenants: Tenants, caller: str, method: str, path: str, expected: int
) -> None:
    settings = tenants.bifrost.settings
    limit = settings.max_upload_bytes if "workspace" in path else settings.max_request_bytes
    head = f"{method} {path} HTTP/1.1\r\n{headers(tenants, caller)}Transfer-Encoding: chunked\r\n\r\n"
    with raw_request(tenants.bifrost.url, head) as connection:
        if caller != "anonymous":
            send_chunks(connection, limit + 1)
        assert status_of(connection) == expected


def test_an_announced_body_past_the_limit_is_refused_unread(tenants: Tenants) -> None:
    settings = tenants.bifrost.settings
    for path, method, caller, limit in (
        ("/api/keys", "POST", "member_a", settings.max_request_bytes),
        ("/api/workspace/files/big.txt", "PUT", "platform", settings.max_upload_bytes),
        ("/api/workspace/sync", "POST", "platform", settings.max_upload_bytes),
    ):
        head = f"{method} {path} HTTP/1.1\r\n{headers(tenants, caller)}Content-Length: {limit + 1}\r\n\r\n"
        with raw_request(tenants.bifrost.url, head) as connection:
            assert status_of(connection) == 413, path


def test_workspace_uploads_have_their_own_larger_limit(tenants: Tenants) -> None:
    size = tenants.bifrost.settings.max_request_bytes * 2
    assert size < tenants.bifrost.settings.max_upload_bytes
    with tenants.platform() as platform:
        written = platform.put("/api/workspace/files/large-file.txt", content=b"x" * size)
        synced = platform.post("/api/workspace/sync", json={"files": {"large.txt": "y" * size}, "replace_all": False})
        refused = platform.post("/api/orgs", json={"name": "z" * size})
    assert (written.status_code, synced.status_code, refused.status_code) == (200, 200, 413)


def test_paging_numbers_out_of_range_are_bad_input(tenants: Tenants) -> None:
    with tenants.platform(tenants.org_a) as platform:
        execution = platform.post("/api/workflows/whoami/execute").json()["execution_id"]
        for path, params in (
            ("/api/audit", {"before": str(MAX_ROW_ID + 1)}),
            ("/api/audit", {"before": "0"}),
            ("/api/audit", {"limit": "100000"}),
            ("/api/executions", {"limit": "0"}),
            ("/api/executions", {"limit": str(MAX_ROW_ID + 1)}),
            (f"/api/executions/{execution}/logs", {"after": str(MAX_LOG_LINE + 1)}),
            (f"/api/executions/{execution}/logs", {"limit": "-1"}),
        ):
            answer = platform.get(path, params=params)
            assert answer.status_code == 422, f"{path} {params}: {answer.status_code} {answer.text}"
        for path, params in (
            ("/api/audit", {"before": str(MAX_ROW_ID)}),
            (f"/api/executions/{execution}/logs", {"after": str(MAX_LOG_LINE)}),
        ):
            assert platform.get(path, params=params).status_code == 200, f"{path} {params}"
        assert platform.get("/api/executions", params={"cursor": "garbage"}).status_code == 400


def test_query_and_path_parameters_with_a_nul_character_are_refused(tenants: Tenants) -> None:
    with tenants.client("member_a") as member_a:
        started_before = member_a.get("/api/executions", params={"workflow": "ping", "limit": "100"}).json()
        for method, path, params, where in (
            ("POST", "/api/endpoints/ping", {"text": "nul\x00text"}, ["query", "text"]),
            ("GET", "/api/executions", {"user": "nul\x00"}, ["query", "user"]),
            ("GET", "/api/executions", {"wor\x00kflow": "ping"}, ["query", "wor\x00kflow"]),
            ("GET", "/api/executions/nul%00id", {}, ["path", "execution_id"]),
            ("GET", "/api/config/nul%00name", {}, ["path", "name"]),
        ):
            answer = member_a.request(method, path, params=params)
            assert answer.status_code == 422, f"{method} {path}: {answer.status_code} {answer.text[:300]}"
            assert answer.json()["detail"][0]["loc"] == where, answer.text
            assert "NUL character" in answer.json()["detail"][0]["msg"]
        started_after = member_a.get("/api/executions", params={"workflow": "ping", "limit": "100"}).json()
    with tenants.client("admin_a") as admin_a:
        audit = admin_a.get("/api/audit", params={"action": "\x00"})
    with tenants.client("anonymous") as anonymous:
        anonymous_call = anonymous.post("/api/endpoints/ping", params={"text": "\x00"})

    assert started_after == started_before  # the endpoint started nothing
    assert (audit.status_code, audit.json()["detail"][0]["loc"]) == (422, ["query", "action"])
    assert anonymous_call.status_code == 401  # authentication first, as for bodies
    assert_every_list_answers(tenants)
