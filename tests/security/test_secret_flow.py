"""A secret goes wherever a workflow passes it, masked: into the sub-workflows it starts (which still receive the
real value), their logs, results and variables, and what a crashed runner printed last."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.conftest import eventually, finished
from tests.security.conftest import Tenants

PASSED_ON = "passed-on-secret-value-61c0f7"
CRASHED_ON = "crash-printed-secret-value-a94e2d"

FLOWS = """
import hashlib
import logging
import os
import subprocess
import sys

from bifrost import secrets, workflow, workflows

logger = logging.getLogger(__name__)


@workflow(execution_mode="sync")
async def hand_down(name: str):
    value = await secrets.get(name)
    return await workflows.run("receive", token=value, note=f"the token is {value}", nested={"list": [value]})


@workflow
async def receive(token: str, note: str, nested: dict):
    logger.info("received %s", token)
    print(f"printed {note}")
    held = {"again": token, "nested": nested}
    return {"token": token, "fingerprint": hashlib.sha256(token.encode()).hexdigest(), "held": len(held)}


@workflow(execution_mode="sync")
async def crash(name: str):
    value = await secrets.get(name)
    print(f"about to crash with {value}", file=sys.stderr, flush=True)
    os.write(2, f"raw write of {value}\\n".encode())
    subprocess.run(["sh", "-c", 'echo "a subprocess wrote $1" >&2', "sh", value], check=True)
    os._exit(3)
"""


@pytest.fixture(scope="module", autouse=True)
def flows(tenants: Tenants) -> None:
    with tenants.client("admin_a") as admin_a:
        assert admin_a.put("/api/secrets/passed-on", json={"value": PASSED_ON}).status_code == 200
        assert admin_a.put("/api/secrets/crashed-on", json={"value": CRASHED_ON}).status_code == 200
    tenants.bifrost.write_workflow("secret_flow.py", FLOWS)
    with tenants.platform() as platform:
        eventually(
            lambda: {"hand_down", "receive", "crash"} <= {w["name"] for w in platform.get("/api/workflows").json()},
            what="the workflows to register",
        )


def child_of(client: httpx.Client, parent_id: str) -> dict[str, Any]:
    listed = client.get("/api/executions", params={"workflow": "receive"}).json()["executions"]
    children = [execution for execution in listed if execution["parent_execution_id"] == parent_id]
    assert len(children) == 1, listed
    return children[0]


def raw_files(tenants: Tenants) -> bytes:
    """Every file the control plane, its runners and NATS keep (database, WAL, runner logs, JetStream store),
    after the SQLite log was checkpointed into the database file."""
    database = Path(tenants.bifrost.settings.resolved_database_url.removeprefix("sqlite:///"))
    with sqlite3.connect(database) as connection:
        connection.execute("PRAGMA wal_checkpoint(FULL)")
    folder = tenants.bifrost.settings.data_dir.parent
    return b"".join(path.read_bytes() for path in folder.rglob("*") if path.is_file())


def test_a_secret_passed_to_a_sub_workflow_is_masked_there_and_still_received(tenants: Tenants) -> None:
    with tenants.client("member_a") as member_a:
        done = member_a.post("/api/workflows/hand_down/execute", json={"parameters": {"name": "passed-on"}})
        assert done.status_code == 200, done.text
        parent = done.json()
        assert parent["status"] == "Success", parent["error"]
        child = finished(member_a, child_of(member_a, parent["execution_id"])["execution_id"])
        child_id = child["execution_id"]
        logs = member_a.get(f"/api/executions/{child_id}/logs").text
        variables = member_a.get(f"/api/executions/{child_id}/variables").text
    assert child["status"] == "Success", child["error"]
    # The child ran with the real value: it hashed it.
    assert child["result"]["fingerprint"] == hashlib.sha256(PASSED_ON.encode()).hexdigest()
    assert child["parameters"] == {
        "token": "********",
        "note": "the token is ********",
        "nested": {"list": ["********"]},
    }
    assert child["result"]["token"] == "********"
    assert "received ********" in logs
    assert "printed the token is ********" in logs
    assert "********" in variables
    assert parent["result"]["token"] == "********"
    for output in (str(child), str(parent), logs, variables):
        assert PASSED_ON not in output
    assert b"passed-on" in raw_files(tenants)  # the secret's name is there: the right files were read
    assert PASSED_ON.encode() not in raw_files(tenants)
    assert sealed_parameters(tenants, child_id) is None  # encrypted while the child may run, dropped once it ended


def sealed_parameters(tenants: Tenants, execution_id: str) -> str | None:
    database = tenants.bifrost.settings.resolved_database_url.removeprefix("sqlite:///")
    with sqlite3.connect(database) as connection:
        row = connection.execute("SELECT sealed_parameters FROM executions WHERE id = ?", (execution_id,)).fetchone()
    assert row is not None
    sealed: str | None = row[0]
    return sealed


def test_what_a_crashed_runner_printed_is_kept_masked(tenants: Tenants) -> None:
    with tenants.client("member_a") as member_a:
        done = member_a.post("/api/workflows/crash/execute", json={"parameters": {"name": "crashed-on"}})
        assert done.status_code in (200, 202), done.text
        execution = finished(member_a, done.json()["execution_id"])
    assert execution["status"] == "Failed"
    assert execution["error"]["type"] == "RunnerExited"
    tail = execution["error"]["runner_log_tail"]
    assert "raw write of ********" in tail
    assert "a subprocess wrote ********" in tail
    assert CRASHED_ON not in str(execution)

