"""Calling data providers over HTTP against the real app with real runners: options run in a fresh runner as the
caller, are reused while the workspace stays the same, and every failure comes back naming the provider."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.api.conftest import Bifrost, eventually, running_bifrost

PROVIDERS = '''
import hashlib
import logging

from bifrost import config, context, data_provider, secrets

logger = logging.getLogger(__name__)


@data_provider(cache_ttl_seconds=300)
async def colours(shade: str = "all", limit: int = 10):
    """Colours to choose from.

    Args:
        shade: light, dark or all.
    """
    found = {"light": ["white", "yellow"], "dark": ["black", "navy"]}
    names = found.get(shade, [*found["light"], *found["dark"]])[:limit]
    return [{"value": name, "label": name.title()} for name in names]


@data_provider(cache_ttl_seconds=0)
async def caller():
    """Who calls, with what the organisation keeps."""
    return [
        {"value": context.user.email, "label": "user"},
        {"value": context.org_id or "", "label": "org", "description": context.organization.name},
        {"value": hashlib.sha256((await secrets.get("provider-token")).encode()).hexdigest(), "label": "secret"},
        {"value": await config.get("provider-region") or "", "label": "config"},
    ]


@data_provider
async def not_a_list():
    return {"value": "a", "label": "A"}


@data_provider
async def unlabelled():
    return [{"value": "a", "label": "A"}, {"value": "b"}, "c"]


@data_provider
def broken(reason: str = "the directory is down"):
    logger.warning("about to fail")
    raise RuntimeError(reason)


@data_provider(timeout_seconds=1)
async def slow():
    import asyncio

    await asyncio.sleep(30)
    return []
'''

STUCK = '''
import time

from bifrost import data_provider

time.sleep(120)  # importing the module never ends, so the runner never gets to call (or time) the provider


@data_provider(timeout_seconds=1)
def stuck():
    return []
'''


@pytest.fixture(scope="module")
def bifrost(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bifrost]:
    files = {"providers.py": PROVIDERS, "stuck.py": STUCK}
    with running_bifrost(
        tmp_path_factory.mktemp("providers"), database_url, files, data_provider_launch_seconds=3
    ) as running:
        with running.client() as admin:
            eventually(lambda: len(admin.get("/api/data-providers").json()) == 7, what="the providers to register")
        yield running


@pytest.fixture
def admin(bifrost: Bifrost) -> Iterator[httpx.Client]:
    with bifrost.client() as client:
        yield client


def options(admin: httpx.Client, name: str, **inputs: Any) -> httpx.Response:
    return admin.post(f"/api/data-providers/{name}/options", json={"inputs": inputs})


def test_lists_providers_with_their_input_schemas(admin: httpx.Client) -> None:
    providers = {p["name"]: p for p in admin.get("/api/data-providers").json()}
    colours = providers["colours"]
    assert colours["description"] == "Colours to choose from."
    assert colours["cache_ttl_seconds"] == 300
    assert colours["timeout_seconds"] == 10
    assert colours["parameters_schema"]["properties"]["shade"]["description"] == "light, dark or all."
    assert providers["slow"]["timeout_seconds"] == 1
    assert admin.get("/api/data-providers/colours").json()["name"] == "colours"
    assert admin.get("/api/data-providers/nope").status_code == 404
    assert "colours" not in {w["name"] for w in admin.get("/api/workflows").json()}


def test_options_run_once_then_are_reused(admin: httpx.Client) -> None:
    first = options(admin, "colours", shade="dark")
    assert first.status_code == 200, first.text
    assert first.json()["options"] == [
        {"value": "black", "label": "Black", "description": None},
        {"value": "navy", "label": "Navy", "description": None},
    ]
    assert first.json()["cached"] is False
    again = options(admin, "colours", shade="dark")
    assert again.json() == {**first.json(), "cached": True}
    other_inputs = options(admin, "colours", shade="dark", limit=1)
    assert other_inputs.json()["cached"] is False
    assert [o["value"] for o in other_inputs.json()["options"]] == ["black"]

    call = admin.get(f"/api/executions/{first.json()['execution_id']}").json()
    assert (call["kind"], call["workflow_name"], call["status"]) == ("data_provider", "colours", "Success")
    assert call["parameters"] == {"shade": "dark", "limit": 10}
    listed = admin.get("/api/executions", params={"kind": "data_provider", "workflow": "colours"}).json()
    assert len(listed["executions"]) == 2
    default_list = admin.get("/api/executions").json()["executions"]
    assert all(execution["kind"] == "workflow" for execution in default_list)


def test_a_changed_provider_file_is_called_again(bifrost: Bifrost, admin: httpx.Client) -> None:
    before = options(admin, "colours", shade="light").json()
    assert options(admin, "colours", shade="light").json()["cached"] is True
    revision = admin.get(f"/api/executions/{before['execution_id']}").json()["workspace_revision"]
    bifrost.write_workflow("providers.py", PROVIDERS.replace("name.title()", "name.upper()"))

    def relabelled() -> dict[str, Any] | None:
        answer: dict[str, Any] = options(admin, "colours", shade="light").json()
        return answer if answer["options"][0]["label"] == "WHITE" else None

    answer = eventually(relabelled, what="the changed provider to answer")
    assert answer["cached"] is False
    call = admin.get(f"/api/executions/{answer['execution_id']}").json()
    assert call["workspace_revision"] != revision
    assert options(admin, "colours", shade="light").json()["cached"] is True


def test_runs_as_the_caller_with_the_organisations_secrets_and_config(admin: httpx.Client) -> None:
    assert admin.put("/api/secrets/provider-token", json={"value": "s3cr3t-value"}).is_success
    assert admin.put("/api/config/provider-region", json={"value": "eu-west"}).is_success
    me = admin.get("/api/users/me").json()
    answer = options(admin, "caller")
    assert answer.status_code == 200, answer.text
    values = {option["label"]: option for option in answer.json()["options"]}
    assert values["user"]["value"] == me["email"]
    assert values["org"]["value"] == me["org_id"] and values["org"]["description"] == "Default"
    assert values["config"]["value"] == "eu-west"
    # A secret's value is masked in what a provider returns; what it made of it is not.
    assert values["secret"]["value"] == hashlib.sha256(b"s3cr3t-value").hexdigest()
    assert options(admin, "caller").json()["cached"] is False  # cache_ttl_seconds=0: never reused


def test_inputs_are_checked_against_the_providers_parameters(admin: httpx.Client) -> None:
    def calls() -> int:
        listed = admin.get("/api/executions", params={"kind": "data_provider", "workflow": "colours"}).json()
        return len(listed["executions"])

    before = calls()
    answer = options(admin, "colours", limit="many", colour="red")
    assert answer.status_code == 422
    errors = {tuple(error["loc"]): error for error in answer.json()["detail"]}
    assert set(errors) == {("inputs", "limit"), ("inputs", "colour")}
    assert errors[("inputs", "colour")]["type"] == "unknown_parameter"
    assert calls() == before


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("not_a_list", "data provider 'not_a_list' returned a dict instead of a list of options"),
        ("unlabelled", "data provider 'unlabelled' returned a list that is not one of options"),
    ],
)
def test_a_return_that_is_not_options_is_a_502_naming_the_provider(
    admin: httpx.Client, name: str, message: str
) -> None:
    answer = options(admin, name)
    assert answer.status_code == 502
    assert answer.json()["detail"].startswith(message)
    assert answer.json()["provider"] == name
    if name == "unlabelled":
        assert "item 1 has no 'label'" in answer.json()["detail"]
        assert "item 2 is not an object" in answer.json()["detail"]


def test_a_provider_that_raises_is_a_502_with_its_error_and_its_logs_kept(admin: httpx.Client) -> None:
    answer = options(admin, "broken", reason="LDAP unreachable")
    assert answer.status_code == 502
    assert answer.json()["detail"] == "data provider 'broken' failed: RuntimeError: LDAP unreachable"
    execution_id = answer.json()["execution_id"]
    call = admin.get(f"/api/executions/{execution_id}").json()
    assert call["status"] == "Failed" and "RuntimeError" in call["error"]["traceback"]
    logs = admin.get(f"/api/executions/{execution_id}/logs").json()["logs"]
    assert any("about to fail" in line["message"] for line in logs)
    assert options(admin, "broken", reason="LDAP unreachable").json()["execution_id"] != execution_id


def test_a_provider_past_its_timeout_is_a_504_naming_it(admin: httpx.Client) -> None:
    answer = options(admin, "slow")
    assert answer.status_code == 504
    assert answer.json()["detail"] == "data provider 'slow' did not finish within its timeout of 1 s"
    assert admin.get(f"/api/executions/{answer.json()['execution_id']}").json()["status"] == "Timeout"


def test_a_runner_that_never_answers_is_cut_off_and_cancelled(admin: httpx.Client) -> None:
    answer = options(admin, "stuck")
    assert answer.status_code == 504
    assert answer.json()["detail"].startswith("data provider 'stuck' did not answer within 4 s")
    execution_id = answer.json()["execution_id"]
    eventually(
        lambda: admin.get(f"/api/executions/{execution_id}").json()["status"] == "Cancelled",
        what="the stuck call to be cancelled",
    )
