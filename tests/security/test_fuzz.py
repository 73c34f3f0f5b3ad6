"""Schemathesis against Bifrost's own OpenAPI document with a valid platform-admin key: whatever it sends,
no route answers with a server error. And Hypothesis writing values of every kind as every kind of principal:
whatever one of them gets accepted, every list route still answers every other one."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.core.result import Err
from schemathesis.openapi import from_dict
from schemathesis.schemas import APIOperation

from control_plane.app import create_app
from control_plane.settings import Settings
from tests.api.conftest import ADMIN_KEY
from tests.security.conftest import Tenants, assert_every_list_answers, nested, running_tenants, send_json


@pytest.fixture(scope="module")
def database_kind() -> str:
    """PostgreSQL: stricter than SQLite about what text it stores (NUL characters, say)."""
    return "postgresql"


Operation = APIOperation[Any, Any, Any, Any]


def _operations() -> list[Operation]:
    """Every operation of the OpenAPI document (building the app starts nothing, that happens in its lifespan)."""
    operations: list[Operation] = []
    for result in from_dict(create_app(Settings()).openapi()).get_all_operations():
        if isinstance(result, Err):
            raise result.err()
        operations.append(result.ok())
    return operations


# A test of pytest's own per operation, with an id of its own: the items of schemathesis' `parametrize` share one
# node id, which pytest-xdist takes for one test and runs once.
@pytest.mark.parametrize("operation", _operations(), ids=lambda operation: operation.label)
def test_no_server_errors(operation: Operation, tenants: Tenants) -> None:
    @given(case=st.one_of(*[operation.as_strategy(mode) for mode in GenerationMode]))
    @settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    def answered_without_server_error(case: schemathesis.Case[Any]) -> None:
        headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
        response = case.call(base_url=tenants.bifrost.url, headers=headers, timeout=60)
        what = f"{case.method} {case.formatted_path}"
        assert response.status_code < 500, f"{what}: {response.status_code} {response.text}"

    answered_without_server_error()


def test_text_the_database_cannot_hold_is_bad_input(tenants: Tenants) -> None:
    with tenants.platform() as platform:
        written = platform.post("/api/orgs", json={"name": "nul\x00org"})
        assert written.status_code == 422, written.text
        assert written.json()["detail"][0]["loc"] == ["body", "name"], written.text
        assert "NUL" in written.json()["detail"][0]["msg"]
        for answer, where in (
            (platform.get("/api/orgs/nul%00id"), ["path", "org_id"]),
            (platform.get("/api/executions", params={"workflow": "nul\x00"}), ["query", "workflow"]),
        ):
            assert answer.status_code == 422
            assert answer.json()["detail"][0]["loc"] == where, answer.text
            assert "NUL" in answer.json()["detail"][0]["msg"]


# Text as careless clients send it: any character, NUL and unpaired surrogates included.
texts = st.text(st.characters(codec=None) | st.sampled_from(["\x00", "\ud800", "\udfff", "\u2028"]), max_size=12)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | texts,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=12,
) | st.integers(1, 400).map(nested)
moments = st.datetimes(timezones=st.timezones()).map(lambda moment: moment.isoformat()) | st.sampled_from(
    ["9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59"]
)


@dataclass(frozen=True)
class Write:
    caller: str
    org: str
    """`a` or `b`: the organization the caller acts for."""
    method: str
    path: str
    body: Any


def writes(tenants: Tenants) -> st.SearchStrategy[Write]:
    a, b = "a", "b"
    unique = st.uuids().map(lambda u: u.hex[:10])
    return st.one_of(
        st.builds(
            lambda t: Write(
                "member_a", a, "POST", "/api/workflows/ping/execute?sync=false", {"parameters": {"text": t}}
            ),
            texts,
        ),
        st.builds(lambda v: Write("admin_a", a, "PUT", "/api/config/fuzzed", {"value": v}), json_values),
        st.builds(
            lambda v, o: Write("platform", o, "PUT", "/api/config/fuzzed-global?global=true", {"value": v}),
            json_values,
            st.sampled_from([a, b]),
        ),
        st.builds(lambda t, e: Write("member_b", b, "POST", "/api/keys", {"name": t, "expires_at": e}), texts, moments),
        st.builds(
            lambda t, e: Write("admin_a", a, "POST", "/api/keys/service", {"name": t, "expires_at": e}), texts, moments
        ),
        st.builds(lambda t: Write("admin_a", a, "PUT", "/api/secrets/fuzzed", {"value": t}), texts),
        st.builds(
            lambda t, v: Write(
                "admin_a",
                a,
                "POST",
                "/api/forms",
                {
                    "name": t,
                    "workflow": "ping",
                    "description": t,
                    "fields": [
                        {"name": "text", "label": t, "help_text": t, "default": t},
                        {"name": "note", "widget": "markdown", "content": t, "visible_if": v},
                    ],
                },
            ),
            texts,
            json_values,
        ),
        st.builds(
            lambda t, u: Write("admin_a", a, "POST", "/api/users", {"email": f"{u}@a.test", "name": t}), texts, unique
        ),
        st.builds(lambda t: Write("member_b", b, "PATCH", f"/api/users/{tenants.member_b}", {"name": t}), texts),
        st.builds(lambda t, o: Write("platform", o, "POST", "/api/orgs", {"name": t}), texts, st.sampled_from([a, b])),
        st.builds(lambda t: Write("platform", b, "PATCH", f"/api/orgs/{tenants.org_b}", {"name": t}), texts),
        st.builds(
            lambda t: Write(
                "platform", a, "POST", "/api/workspace/sync", {"files": {"fuzzed.txt": t}, "replace_all": False}
            ),
            texts,
        ),
    )


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def tenants_of_each_database(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Tenants]:
    """SQLite stores more than PostgreSQL does (unpaired surrogates, NaN): more that answers could choke on."""
    with running_tenants(request.param, tmp_path_factory, request) as tenants:
        yield tenants


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(data=st.data())
def test_no_accepted_write_breaks_a_list_for_anyone(tenants_of_each_database: Tenants, data: st.DataObject) -> None:
    tenants = tenants_of_each_database
    write = data.draw(writes(tenants))
    org = {"a": tenants.org_a, "b": tenants.org_b}[write.org]
    with tenants.client(write.caller, org if write.caller == "platform" else None) as client:
        answer = send_json(client, write.method, write.path, write.body)
    assert answer.status_code < 500, f"{write}: {answer.status_code} {answer.text[:300]}"
    if answer.is_success:
        assert_every_list_answers(tenants)
