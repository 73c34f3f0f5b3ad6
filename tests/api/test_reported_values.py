"""What a workflow reports (its result, log records, variables, error) is stored made storable, the run ends
in its true final status, and every route that reads runs answers afterwards: real runners, NATS, SQLite and
PostgreSQL. Events that break the rules anyway (sent by something other than a runner) are stored made
storable too, without stalling ingest."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
from nats.aio.client import RawCredentials

from bifrost._internal.protocol import events_subject, inbox_prefix, message_id, nats_credentials_file
from control_plane.security.nats_identities import AccountSigner
from tests.api.conftest import Bifrost, eventually, finished, running_bifrost, start

WORKFLOWS = """
import asyncio
import logging

from bifrost import workflow

logger = logging.getLogger(__name__)


def nested(depth):
    value = "bottom"
    for _ in range(depth):
        value = [value]
    return value


POISONS = {
    "surrogate": "a\\ud800b",
    "surrogate pair": "smile \\ud83d\\ude00",
    "nul": "a\\x00b",
    "deep": nested(600),
    "nan": float("nan"),
    "keys": {1: "one", "\\udfff": 2, "n\\x00l": 3},
}


@workflow
async def returns(kind: str):
    return {"value": POISONS[kind]}


@workflow
def logs(kind: str):
    logger.info("logged: %s", POISONS[kind])
    print("printed:", POISONS[kind])
    logging.getLogger("by\\ud800name").warning("named")
    return "logged"


@workflow
async def holds(kind: str):
    held = POISONS[kind]
    return "held"


@workflow
def raises(kind: str):
    raise RuntimeError(POISONS[kind])


@workflow
async def returns_itself():
    itself = []
    itself.append(itself)
    return itself


@workflow
async def hold(seconds: float = 120):
    await asyncio.sleep(seconds)
"""

KINDS = ("surrogate", "surrogate pair", "nul", "deep", "nan", "keys")
CUT = "<cut: nested deeper than 64 levels>"


@pytest.fixture(scope="module")
def bifrost(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bifrost]:
    with running_bifrost(tmp_path_factory.mktemp("reported"), database_url, {"reporting.py": WORKFLOWS}) as running:
        with running.client() as admin:
            eventually(
                lambda: (
                    {"returns", "logs", "holds", "raises", "returns_itself", "hold"}
                    <= {w["name"] for w in admin.get("/api/workflows").json()}
                ),
                what="the workflows to register",
            )
        yield running


@pytest.fixture
def api(bifrost: Bifrost) -> Iterator[httpx.Client]:
    with bifrost.client() as client:
        yield client


def cut_after(levels: int, marker: str = CUT) -> Any:
    """`levels` lists, one in the other, around the marker of what was cut."""
    value: Any = marker
    for _ in range(levels):
        value = [value]
    return value


def strict_json(text: str) -> Any:
    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def assert_readable(api: httpx.Client, execution_id: str) -> dict[str, Any]:
    """Every read of the execution answers 200 with JSON any client parses; the execution as read."""
    for path in ("", "/logs", "/variables", "/result"):
        answer = api.get(f"/api/executions/{execution_id}{path}")
        assert answer.status_code == 200, f"{path}: {answer.status_code} {answer.text[:300]}"
        strict_json(answer.text)
    with api.stream("GET", f"/api/executions/{execution_id}/stream") as replay:
        assert replay.status_code == 200
        data = [line.removeprefix("data:").strip() for line in replay.iter_lines() if line.startswith("data:")]
    assert data, "the stream replayed nothing"
    for item in data:
        strict_json(item)
    listed = api.get("/api/executions", params={"limit": 500})
    assert listed.status_code == 200, listed.text[:300]
    strict_json(listed.text)
    execution: dict[str, Any] = api.get(f"/api/executions/{execution_id}").json()
    return execution


def run(api: httpx.Client, workflow: str, kind: str) -> tuple[dict[str, Any], str]:
    execution_id = start(api, workflow, kind=kind)
    execution = finished(api, execution_id)
    assert_readable(api, execution_id)
    return execution, execution_id


RESULTS = {
    "surrogate": "a\ufffdb",
    "surrogate pair": "smile \U0001f600",
    "nul": "a\ufffdb",
    "deep": cut_after(63),  # the result's dict is the first of 64 levels
    "nan": None,
    "keys": {"1": "one", "\ufffd": 2, "n\ufffdl": 3},
}


@pytest.mark.parametrize("kind", KINDS)
def test_a_result_is_stored_made_storable(api: httpx.Client, kind: str) -> None:
    execution, _ = run(api, "returns", kind)
    assert execution["status"] == "Success", execution["error"]
    assert execution["result"] == {"value": RESULTS[kind]}


LOGGED = {
    "surrogate": "a\ufffdb",
    "surrogate pair": "smile \U0001f600",
    "nul": "a\ufffdb",
    "nan": "nan",
    "keys": "{1: 'one', '\\udfff': 2, 'n\\x00l': 3}",
}


@pytest.mark.parametrize("kind", KINDS)
def test_log_records_are_stored_made_storable(api: httpx.Client, kind: str) -> None:
    execution, execution_id = run(api, "logs", kind)
    assert execution["status"] == "Success", execution["error"]
    lines = api.get(f"/api/executions/{execution_id}/logs").json()["logs"]
    by_logger = {line["logger"]: line["message"] for line in lines}
    assert by_logger["by\ufffdname"] == "named"
    if kind == "deep":
        assert by_logger["reporting"] == f"logged: {'[' * 600}'bottom'{']' * 600}"
    else:
        assert by_logger["reporting"] == f"logged: {LOGGED[kind]}"
        assert by_logger["stdout"] == f"printed: {LOGGED[kind]}"


HELD = {
    "surrogate": "a\ufffdb",
    "surrogate pair": "smile \U0001f600",
    "nul": "a\ufffdb",
    "deep": cut_after(63),  # the variables' dict is the first of 64 levels
    "nan": "nan",  # not JSON: shown as its repr
    "keys": "{1: 'one', '\\udfff': 2, 'n\\x00l': 3}",
}


@pytest.mark.parametrize("kind", KINDS)
def test_variables_are_stored_made_storable(api: httpx.Client, kind: str) -> None:
    execution, execution_id = run(api, "holds", kind)
    assert execution["status"] == "Success", execution["error"]
    assert api.get(f"/api/executions/{execution_id}/variables").json()["variables"] == {"held": HELD[kind]}


@pytest.mark.parametrize("kind", ["surrogate", "surrogate pair", "nul", "nan"])
def test_an_error_is_stored_made_storable(api: httpx.Client, kind: str) -> None:
    execution, _ = run(api, "raises", kind)
    assert execution["status"] == "Failed"
    message = LOGGED[kind]
    assert execution["error"]["type"] == "RuntimeError"
    assert execution["error"]["message"] == message
    assert execution["error"]["traceback"].endswith(f"RuntimeError: {message}\n")


def test_an_error_message_holding_deep_nesting_is_kept_as_text(api: httpx.Client) -> None:
    execution, _ = run(api, "raises", "deep")
    assert execution["status"] == "Failed"
    assert execution["error"]["message"] == f"{'[' * 600}'bottom'{']' * 600}"


def test_a_result_that_contains_itself_fails_the_run(api: httpx.Client) -> None:
    execution_id = start(api, "returns_itself")
    execution = finished(api, execution_id)
    assert_readable(api, execution_id)
    assert execution["status"] == "Failed"
    assert execution["error"]["type"] == "ResultNotSerializable"
    assert "contains itself" in execution["error"]["message"]


def test_the_depth_kept_is_the_configured_one(tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path / 'bifrost.db'}"
    with (
        running_bifrost(tmp_path, database_url, {"reporting.py": WORKFLOWS}, max_json_depth=8) as bifrost,
        bifrost.client() as api,
    ):
        eventually(lambda: "holds" in {w["name"] for w in api.get("/api/workflows").json()}, what="registering")
        returned, _ = run(api, "returns", "deep")
        _, held_id = run(api, "holds", "deep")
        variables = api.get(f"/api/executions/{held_id}/variables").json()["variables"]
    marker = "<cut: nested deeper than 8 levels>"
    assert returned["result"] == {"value": cut_after(7, marker)}
    assert variables == {"held": cut_after(7, marker)}


def nested(depth: int) -> Any:
    value: Any = "bottom"
    for _ in range(depth):
        value = [value]
    return value


async def publish_raw(nats_url: str, account_seed: str, execution_id: str, events: list[dict[str, Any]]) -> None:
    """Publish events as JSON a runner never writes (NUL escaped, NaN and Infinity as bare words), under the NATS
    identity of the execution's runner, as workflow code holding it could."""
    identity = AccountSigner(account_seed).runner(execution_id, datetime.now(UTC) + timedelta(hours=1))
    client = await nats.connect(
        nats_url,
        user_credentials=RawCredentials(nats_credentials_file(identity.jwt, identity.seed)),
        inbox_prefix=inbox_prefix(execution_id),
    )
    try:
        js = client.jetstream()
        for event in events:
            data = json.dumps({"execution_id": execution_id, **event}).encode()
            await js.publish(
                events_subject(execution_id), data, headers={"Nats-Msg-Id": message_id(execution_id, event["seq"])}
            )
    finally:
        await client.close()


def test_events_breaking_the_rules_are_stored_made_storable_without_stalling_ingest(
    bifrost: Bifrost, api: httpx.Client
) -> None:
    execution_id = start(api, "hold")
    eventually(
        lambda: api.get(f"/api/executions/{execution_id}").json()["status"] == "Running",
        within=60,
        what="the run to start",
    )
    record = {"ts": "2026-01-01T00:00:00Z", "level": "INF\x00", "logger": "l\x00g", "message": "a\x00b"}
    forged = [
        {"type": "log", "seq": 2, "records": [record]},
        {"type": "variables", "seq": 3, "variables": {"k\x00": float("nan"), "deep": nested(150)}},
        {"type": "result", "seq": 4, "result": {"text": "a\x00b", "n": float("inf"), "deep": nested(150)}},
        {
            "type": "finished",
            "seq": 5,
            "status": "Failed",
            "error_type": "Forged\x00",
            "error_message": "bad\x00",
            "traceback": "trace\x00",
            "duration_ms": float("nan"),
        },
    ]
    assert bifrost.settings.nats_url is not None and bifrost.settings.nats_account_seed is not None
    account_seed = bifrost.settings.nats_account_seed.get_secret_value()
    asyncio.run(publish_raw(bifrost.settings.nats_url, account_seed, execution_id, forged))

    execution = finished(api, execution_id)
    assert execution["status"] == "Failed"
    assert execution["error"]["type"] == "Forged\ufffd"
    assert execution["error"]["message"] == "bad\ufffd"
    assert execution["error"]["traceback"] == "trace\ufffd"
    assert execution["duration_ms"] is None
    assert execution["result"] == {"text": "a\ufffdb", "n": None, "deep": cut_after(63)}
    assert_readable(api, execution_id)
    variables = api.get(f"/api/executions/{execution_id}/variables").json()["variables"]
    assert variables == {"k\ufffd": None, "deep": cut_after(63)}
    [line] = api.get(f"/api/executions/{execution_id}/logs").json()["logs"]
    assert (line["level"], line["logger"], line["message"]) == ("INF\ufffd", "l\ufffdg", "a\ufffdb")
    # Ingest goes on: the next run is recorded as usual.
    after, _ = run(api, "returns", "nan")
    assert after["status"] == "Success"
