"""Workflows run end to end through the API: real runner processes, NATS, SQLite or PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from control_plane.backends.local_records import RunnerRecords
from control_plane.executions.service import LOG_BATCH_LINES
from tests.api.conftest import Bifrost, eventually, finished, running_bifrost, start

WORKFLOWS = """
import asyncio
import logging
import os

from bifrost import context, workflow, workflows

logger = logging.getLogger(__name__)


@workflow(execution_mode="sync")
async def add(a: int, b: int):
    total = a + b
    return {"sum": total}


@workflow
async def chatty(count: int, pause: float = 0.0):
    for i in range(count):
        logger.info("line %d", i)
        if pause:
            await asyncio.sleep(pause)
    return {"logged": count, "org": context.org_id}


@workflow
def explode(reason: str = "boom"):
    raise RuntimeError(reason)


@workflow
def vanish():
    os.write(2, b"about to vanish\\n")  # straight to the runner's stderr, as a crashing extension would
    os._exit(3)


@workflow
async def soft_fail():
    return {"success": False, "error": "the remote system refused the change"}


@workflow
async def parent(n: int):
    child = await workflows.run("add", a=n, b=1)
    return {"child": child}


@workflow
async def nap(seconds: float):
    await asyncio.sleep(seconds)
    return seconds


@workflow(timeout_seconds=1)
async def too_slow():
    await asyncio.sleep(120)


@workflow
def where_am_i():
    return os.getpid()


@workflow(endpoint_enabled=True)
async def lookup(key: str, version: int = 1):
    return {"key": key, "version": version}
"""


@pytest.fixture(scope="module")
def bifrost(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bifrost]:
    with running_bifrost(tmp_path_factory.mktemp("runs"), database_url, {"flows.py": WORKFLOWS}) as running:
        yield running


@pytest.fixture
def api(bifrost: Bifrost) -> Iterator[httpx.Client]:
    with bifrost.client() as client:
        yield client


def server_sent_events(
    api: httpx.Client, execution_id: str, *, last_event_id: int | None = None
) -> Iterator[tuple[str, int, Any]]:
    """The server-sent events of an execution's stream as they come (kind, id, data), until the server ends it;
    with `last_event_id`, resumed after it."""
    fields: dict[str, str] = {}
    headers = {} if last_event_id is None else {"Last-Event-ID": str(last_event_id)}
    with api.stream("GET", f"/api/executions/{execution_id}/stream", headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line:
                name, _, value = line.partition(":")
                fields[name] = value.removeprefix(" ")
            else:  # a blank line ends an event; keep-alive comments come without data
                if "data" in fields:
                    yield fields["event"], int(fields["id"]), json.loads(fields["data"])
                fields = {}


def read_stream(
    api: httpx.Client, execution_id: str, *, last_event_id: int | None = None, log_lines: int | None = None
) -> list[tuple[str, int, dict[str, Any]]]:
    """The events of an execution's stream, a batch of log lines (`logs`) as one `log` event per line, until the
    server ends it (or, with `log_lines`, until that many log lines came, when the client hangs up); with
    `last_event_id`, resumed after it."""
    events: list[tuple[str, int, dict[str, Any]]] = []
    for kind, event_id, data in server_sent_events(api, execution_id, last_event_id=last_event_id):
        if kind == "logs":
            assert event_id == data[-1]["line"], "a batch's id is its last line"
            events.extend(("log", line["line"], line) for line in data)
        else:
            events.append((kind, event_id, data))
        if log_lines is not None and sum(kind == "log" for kind, _, _ in events) >= log_lines:
            break
    return events


def test_sync_workflow_answers_with_its_result(api: httpx.Client) -> None:
    response = api.post("/api/workflows/add/execute", json={"parameters": {"a": 2, "b": "3"}})
    assert response.status_code == 200, response.text
    execution = response.json()
    assert execution["status"] == "Success"
    assert execution["result"] == {"sum": 5}
    assert execution["parameters"] == {"a": 2, "b": 3}
    assert execution["error"] is None
    assert execution["started_at"] is not None and execution["finished_at"] is not None
    # The answer is the execution as stored, the same as reading it back.
    assert api.get(f"/api/executions/{execution['execution_id']}").json() == execution
    assert execution["duration_ms"] is not None


def test_async_workflow_runs_in_the_background_with_ordered_logs(api: httpx.Client) -> None:
    execution_id = start(api, "chatty", count=30)
    execution = finished(api, execution_id)
    assert execution["status"] == "Success"
    assert execution["result"]["logged"] == 30
    assert execution["result"]["org"] == execution["org_id"]
    logs = api.get(f"/api/executions/{execution_id}/logs").json()["logs"]
    workflow_lines = [log["message"] for log in logs if log["logger"] != "bifrost"]
    assert workflow_lines == [f"line {i}" for i in range(30)]
    assert [log["line"] for log in logs] == list(range(1, len(logs) + 1))


def test_sync_query_parameter_waits_for_an_async_workflow(api: httpx.Client) -> None:
    response = api.post("/api/workflows/chatty/execute", params={"sync": "true"}, json={"parameters": {"count": 1}})
    assert response.status_code == 200
    assert response.json()["result"]["logged"] == 1


def test_stream_sends_backlog_then_live_events_without_gaps_or_duplicates(api: httpx.Client) -> None:
    execution_id = start(api, "chatty", count=40, pause=0.01)
    events = read_stream(api, execution_id)
    log_ids = [event_id for kind, event_id, _ in events if kind == "log"]
    assert log_ids == list(range(1, len(log_ids) + 1))
    messages = [data["message"] for kind, _, data in events if kind == "log" and data["logger"] != "bifrost"]
    assert messages == [f"line {i}" for i in range(40)]
    statuses = [data["status"] for kind, _, data in events if kind == "status"]
    assert statuses[-1] == "Success"
    assert len(statuses) == len(set(statuses)), "no status is sent twice"
    assert [data["result"]["logged"] for kind, _, data in events if kind == "result"] == [40]
    assert events[-1][0] == "status", "the stream ends with the final status"


def test_a_stream_resumed_with_last_event_id_sends_each_line_once(api: httpx.Client) -> None:
    execution_id = start(api, "chatty", count=40, pause=0.02)
    first = read_stream(api, execution_id, log_lines=5)
    resumed_after = first[-1][1]
    rest = read_stream(api, execution_id, last_event_id=resumed_after)
    log_ids = [event_id for kind, event_id, _ in first + rest if kind == "log"]
    assert log_ids == list(range(1, len(log_ids) + 1))
    assert min(event_id for kind, event_id, _ in rest if kind == "log") == resumed_after + 1
    messages = [data["message"] for kind, _, data in first + rest if kind == "log" and data["logger"] != "bifrost"]
    assert messages == [f"line {i}" for i in range(40)]
    # Every event's id is the last line sent before it, so resuming after any event loses nothing.
    assert rest[-1] == ("status", log_ids[-1], rest[-1][2])
    assert rest[-1][2]["status"] == "Success"


def test_a_stream_resumed_after_the_end_of_a_finished_execution_sends_only_its_state(api: httpx.Client) -> None:
    execution_id = start(api, "chatty", count=3)
    lines = finished(api, execution_id)["log_count"]
    events = read_stream(api, execution_id, last_event_id=lines)
    assert [kind for kind, _, _ in events] == ["variables", "result", "status"]
    assert {event_id for _, event_id, _ in events} == {lines}


def test_a_last_event_id_that_is_no_line_number_is_refused(api: httpx.Client) -> None:
    execution_id = start(api, "chatty", count=1)
    response = api.get(f"/api/executions/{execution_id}/stream", headers={"Last-Event-ID": "status-3"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["header", "Last-Event-ID"]


def test_stream_of_a_finished_execution_replays_it_and_ends(api: httpx.Client) -> None:
    execution_id = start(api, "chatty", count=3)
    finished(api, execution_id)
    events = read_stream(api, execution_id)
    assert [data["message"] for kind, _, data in events if kind == "log" and data["logger"] != "bifrost"] == [
        "line 0",
        "line 1",
        "line 2",
    ]
    assert [data["status"] for kind, _, data in events if kind == "status"] == ["Success"]
    assert [data["result"]["logged"] for kind, _, data in events if kind == "result"] == [3]


def test_stream_replays_a_long_stored_log_in_batches_whole_and_in_order(api: httpx.Client) -> None:
    execution_id = start(api, "chatty", count=3000)
    log_count = finished(api, execution_id)["log_count"]
    events = list(server_sent_events(api, execution_id))
    batches = [(event_id, data) for kind, event_id, data in events if kind == "logs"]
    assert [kind for kind, _, _ in events] == ["logs"] * len(batches) + ["variables", "result", "status"]
    assert [len(lines) for _, lines in batches] == [LOG_BATCH_LINES] * (log_count // LOG_BATCH_LINES) + (
        [log_count % LOG_BATCH_LINES] if log_count % LOG_BATCH_LINES else []
    )
    assert [event_id for event_id, _ in batches] == [lines[-1]["line"] for _, lines in batches]
    logs = [line for _, lines in batches for line in lines]
    assert [line["line"] for line in logs] == list(range(1, log_count + 1))
    assert [line["message"] for line in logs if line["logger"] != "bifrost"] == [f"line {i}" for i in range(3000)]
    assert logs == api.get(f"/api/executions/{execution_id}/logs").json()["logs"], "as the log pages hold them"
    assert [data["status"] for kind, _, data in events if kind == "status"] == ["Success"]


def test_variables_are_captured(api: httpx.Client) -> None:
    execution = api.post("/api/workflows/add/execute", json={"parameters": {"a": 1, "b": 1}}).json()
    variables = api.get(f"/api/executions/{execution['execution_id']}/variables").json()["variables"]
    assert variables["total"] == 2


def test_raising_workflow_fails_with_its_traceback(api: httpx.Client) -> None:
    execution = finished(api, start(api, "explode", reason="disk on fire"))
    assert execution["status"] == "Failed"
    assert execution["error"]["type"] == "RuntimeError"
    assert "disk on fire" in execution["error"]["message"]
    assert "RuntimeError: disk on fire" in execution["error"]["traceback"]


def test_a_runner_that_dies_unreported_fails_with_its_exit_and_log_tail(api: httpx.Client) -> None:
    execution = finished(api, start(api, "vanish"))
    assert execution["status"] == "Failed"
    assert execution["error"]["type"] == "RunnerExited"
    assert execution["error"]["message"] == "runner exited with code 3"
    assert "about to vanish" in execution["error"]["runner_log_tail"]
    assert execution["error"]["traceback"] is None


def test_success_false_completes_with_errors(api: httpx.Client) -> None:
    execution = finished(api, start(api, "soft_fail"))
    assert execution["status"] == "CompletedWithErrors"
    assert execution["result"]["error"] == "the remote system refused the change"


def test_sub_workflow_runs_as_a_child_of_its_parent(api: httpx.Client) -> None:
    parent = finished(api, start(api, "parent", n=41))
    assert parent["status"] == "Success", parent
    assert parent["result"] == {"child": {"sum": 42}}
    children = api.get("/api/executions", params={"workflow": "add"}).json()["executions"]
    [child] = [c for c in children if c["parent_execution_id"] == parent["execution_id"]]
    assert child["parameters"] == {"a": 41, "b": 1}
    assert (child["user_id"], child["org_id"]) == (parent["user_id"], parent["org_id"])


def test_cancel_stops_a_running_execution(api: httpx.Client) -> None:
    execution_id = start(api, "nap", seconds=60)
    eventually(
        lambda: api.get(f"/api/executions/{execution_id}").json()["status"] == "Running", what="the nap to start"
    )
    response = api.post(f"/api/executions/{execution_id}/cancel")
    assert response.status_code == 202
    assert finished(api, execution_id)["status"] == "Cancelled"
    assert api.post(f"/api/executions/{execution_id}/cancel").status_code == 409


def test_timeout_ends_a_workflow_that_runs_too_long(api: httpx.Client) -> None:
    execution = finished(api, start(api, "too_slow"))
    assert execution["status"] == "Timeout"


def test_endpoint_merges_query_and_body_and_answers_sync(api: httpx.Client) -> None:
    response = api.post("/api/endpoints/lookup", params={"key": "from-query", "version": "2"}, json={"key": "body"})
    assert response.status_code == 200, response.text
    assert response.json()["result"] == {"key": "body", "version": 2}


def test_execution_detail_names_the_runner_process(bifrost: Bifrost, api: httpx.Client) -> None:
    execution = finished(api, start(api, "where_am_i"))
    assert execution["status"] == "Success", execution["error"]
    # The pid of the process that ran the workflow, as the control plane's machine knows it (the workflow, in its
    # sandbox, sees another).
    record = RunnerRecords(bifrost.settings.data_dir.resolve() / "runners").read(execution["execution_id"])
    assert record is not None and record.pid is not None
    assert execution["runner"] == {
        "backend": "local",
        "runner_ref": str(record.pid),
        "namespace": None,
        "job_name": None,
        "pod_name": None,
        "commands": [],
    }
    listed = api.get("/api/executions", params={"workflow": "where_am_i"}).json()["executions"]
    assert [row["runner"]["runner_ref"] for row in listed] == [str(record.pid)]
