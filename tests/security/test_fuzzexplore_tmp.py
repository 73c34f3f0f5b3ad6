"""Schemathesis against Bifrost's own OpenAPI document with a valid platform-admin key: whatever it sends,
no route answers with a server error."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.openapi import from_dict

from control_plane.app import create_app
from control_plane.settings import Settings
from tests.api.conftest import ADMIN_KEY
from tests.security.conftest import Tenants


@pytest.fixture(scope="module")
def database_kind() -> str:
    """PostgreSQL: stricter than SQLite about what text it stores (NUL characters, say)."""
    return "postgresql"


# The document only: building the app starts nothing, that happens in its lifespan.
schema = from_dict(create_app(Settings()).openapi())


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors(case: schemathesis.Case[Any], tenants: Tenants) -> None:
    response = case.call(base_url=tenants.bifrost.url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=60)
    assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.status_code} {response.text}"


def test_text_the_database_cannot_hold_is_bad_input(tenants: Tenants) -> None:
    with tenants.platform() as platform:
        for answer in (
            platform.post("/api/orgs", json={"name": "nul\x00org"}),
            platform.get("/api/orgs/nul%00id"),
            platform.get("/api/executions", params={"workflow": "nul\x00"}),
        ):
            assert answer.status_code == 422
            assert "NUL" in answer.json()["detail"]
