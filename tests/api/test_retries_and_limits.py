"""What `@workflow(retries=..., max_concurrency=...)` promises, end to end: real runner processes, NATS, SQLite or
PostgreSQL. The start and end times compared are the ones the runners reported."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import Bifrost, eventually, finished, running_bifrost, start

WORKFLOWS = """
import asyncio
import os

from bifrost import UserError, context, workflow


@workflow(retries={"count": 2, "backoff_seconds": 1})
def fails_twice(marker_dir: str):
    attempt = len(os.listdir(marker_dir)) + 1
    open(os.path.join(marker_dir, str(attempt)), "w").close()
    if attempt < 3:
        raise RuntimeError(f"attempt {attempt} failed")
    return {"attempt": attempt, "execution": context.execution_id}


@workflow(retries=3)
def refuses():
    raise UserError("the licence pool is empty")


@workflow(retries=3)
def partly():
    return {"success": False, "error": "two of five mailboxes were full"}


@workflow(max_concurrency=1)
async def one_at_a_time(seconds: float = 0.5):
    await asyncio.sleep(seconds)
    return {}
"""


@pytest.fixture(scope="module")
def markers(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the runs of `fails_twice` count their attempts: a folder the sandboxed runners may write."""
    folder = tmp_path_factory.mktemp("markers")
    folder.chmod(0o777)
    return folder


@pytest.fixture(scope="module")
def bifrost(database_url: str, tmp_path_factory: pytest.TempPathFactory, markers: Path) -> Iterator[Bifrost]:
    tmp = tmp_path_factory.mktemp("retries")
    with running_bifrost(tmp, database_url, {"flows.py": WORKFLOWS}, local_sandbox_paths=[markers]) as running:
        yield running


@pytest.fixture
def api(bifrost: Bifrost) -> Iterator[httpx.Client]:
    with bifrost.client() as client:
        eventually(lambda: api_has(client, "one_at_a_time"), what="the workflows")
        yield client


def api_has(client: httpx.Client, name: str) -> bool:
    return client.get(f"/api/workflows/{name}").status_code == 200


def test_a_failed_execution_is_retried_after_its_backoff(api: httpx.Client, markers: Path) -> None:
    counted = markers / uuid.uuid4().hex
    counted.mkdir(mode=0o777)
    counted.chmod(0o777)
    first = start(api, "fails_twice", marker_dir=str(counted))

    def last_attempt() -> dict[str, object] | None:
        chain = api.get(f"/api/executions/{first}").json()["attempts"] or []
        return chain[-1] if len(chain) == 3 and chain[-1]["status"] == "Success" else None

    eventually(last_attempt, within=90, what="the third attempt to succeed")
    attempts = api.get(f"/api/executions/{first}").json()["attempts"]
    assert [(attempt["attempt"], attempt["status"]) for attempt in attempts] == [
        (1, "Failed"),
        (2, "Failed"),
        (3, "Success"),
    ]
    executions = [api.get(f"/api/executions/{attempt['execution_id']}").json() for attempt in attempts]
    assert [execution["trigger"] for execution in executions] == ["api", "retry", "retry"]
    assert [execution["retry_of"] for execution in executions] == [None, first, first]
    assert {execution["user_id"] for execution in executions} == {executions[0]["user_id"]}
    assert {execution["workspace_revision"] for execution in executions} == {executions[0]["workspace_revision"]}
    assert {str(execution["parameters"]) for execution in executions} == {str({"marker_dir": str(counted)})}
    assert executions[2]["result"]["attempt"] == 3
    # The backoff: 1 s, then 2 s, from the end of the attempt before.
    for before, retry, seconds in ((executions[0], executions[1], 1), (executions[1], executions[2], 2)):
        waited = datetime.fromisoformat(retry["start_after"]) - datetime.fromisoformat(before["finished_at"])
        assert waited.total_seconds() == seconds
        assert datetime.fromisoformat(retry["started_at"]) >= datetime.fromisoformat(retry["start_after"])
    # The retry's own detail shows the same chain.
    assert api.get(f"/api/executions/{executions[1]['execution_id']}").json()["attempts"] == attempts


@pytest.mark.parametrize(("workflow", "status"), [("refuses", "Failed"), ("partly", "CompletedWithErrors")])
def test_no_retry_for_a_user_error_or_a_partial_success(api: httpx.Client, workflow: str, status: str) -> None:
    execution_id = start(api, workflow)
    assert finished(api, execution_id)["status"] == status
    retried = api.get("/api/executions", params={"workflow": workflow}).json()["executions"]
    assert [execution["execution_id"] for execution in retried] == [execution_id]
    assert api.get(f"/api/executions/{execution_id}").json()["attempts"] is None


def test_runs_of_a_workflow_limited_to_one_never_overlap(api: httpx.Client) -> None:
    ids = [start(api, "one_at_a_time") for _ in range(3)]
    runs = [finished(api, execution_id) for execution_id in ids]
    assert [run["status"] for run in runs] == ["Success"] * 3
    spans = sorted(
        (datetime.fromisoformat(run["started_at"]), datetime.fromisoformat(run["finished_at"])) for run in runs
    )
    for (_, ended), (began, _) in itertools.pairwise(spans):
        assert began >= ended
    # In the order they were started.
    assert [run["execution_id"] for run in sorted(runs, key=lambda run: run["started_at"])] == ids


def test_a_run_held_back_by_a_limit_says_which_until_it_is_launched(api: httpx.Client) -> None:
    first = start(api, "one_at_a_time", seconds=60)
    eventually(lambda: api.get(f"/api/executions/{first}").json()["status"] == "Running", what="the first run")
    second = start(api, "one_at_a_time", seconds=0)

    waiting = api.get(f"/api/executions/{second}").json()
    assert waiting["status"] == "Pending"
    assert waiting["waiting_for"] == "workflow 'one_at_a_time''s max_concurrency of 1: 1 run now"
    assert api.get(f"/api/executions/{first}").json()["waiting_for"] is None
    assert all(execution["waiting_for"] is None for execution in api.get("/api/executions").json()["executions"])

    assert api.post(f"/api/executions/{first}/cancel").status_code == 202
    assert finished(api, second)["status"] == "Success"
    assert api.get(f"/api/executions/{second}").json()["waiting_for"] is None
