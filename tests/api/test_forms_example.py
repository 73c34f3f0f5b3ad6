"""The example of docs/forms.md, posted as written against the example workspace's workflow and data providers:
the managers offered depend on the department chosen, and a submission starts the workflow."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.conftest import eventually, fresh_database, running_bifrost

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_FILES = ("data_providers.py", "user_management.py")


def documented_form() -> dict[str, Any]:
    page = (REPO_ROOT / "docs" / "forms.md").read_text()
    block = re.search(r"^```json\n(.*?)^```", page, re.MULTILINE | re.DOTALL)
    assert block, "docs/forms.md has no JSON example"
    form: dict[str, Any] = json.loads(block.group(1))
    return form


@pytest.fixture(scope="module")
def admin(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[httpx.Client]:
    tmp = tmp_path_factory.mktemp("example")
    files = {name: (REPO_ROOT / "workspace" / name).read_text() for name in EXAMPLE_FILES}
    with running_bifrost(tmp, fresh_database("sqlite", tmp, request), files) as bifrost, bifrost.client() as client:
        eventually(lambda: client.get("/api/workflows/assign_manager").status_code == 200, what="the example")
        yield client


def test_the_documented_form_offers_the_managers_of_the_chosen_department(admin: httpx.Client) -> None:
    made = admin.post("/api/forms", json=documented_form())
    assert made.status_code == 201, made.text
    form = made.json()
    assert form["needs_attention"] is False
    options = f"/api/forms/{form['id']}/fields/manager/options"
    finance = admin.post(options, json={"values": {"department": "Finance"}}).json()["options"]
    assert finance == [{"value": "grace@example.com", "label": "Grace Hopper", "description": "Head of Finance"}]
    it = admin.post(options, json={"values": {"department": "IT"}}).json()["options"]
    assert [option["value"] for option in it] == ["ada@example.com", "linus@example.com"]

    values = {"email": "new@example.com", "department": "Finance", "manager": "grace@example.com", "note": "Moved"}
    done = admin.post(f"/api/forms/{form['id']}/submit", json={"values": values})
    assert done.status_code == 202, done.text  # assign_manager runs async
    execution_id = done.json()["execution_id"]
    finished = eventually(
        lambda: (e := admin.get(f"/api/executions/{execution_id}").json())["status"] == "Success" and e,
        what="the workflow to finish",
    )
    assert finished["result"] == values
    assert (finished["trigger"], finished["form_id"]) == ("form", form["id"])

    wrong_manager = admin.post(f"/api/forms/{form['id']}/submit", json={"values": {**values, "department": "IT"}})
    assert wrong_manager.status_code == 422
    assert wrong_manager.json()["detail"] == [
        {"loc": ["values", "manager"], "msg": "'grace@example.com' is not one of the choices", "type": "value_error"}
    ]
    in_it = {**values, "department": "IT", "manager": "ada@example.com"}
    hidden_note = admin.post(f"/api/forms/{form['id']}/submit", json={"values": in_it}).json()["execution_id"]
    assert admin.get(f"/api/executions/{hidden_note}").json()["parameters"] == {**in_it, "note": ""}
