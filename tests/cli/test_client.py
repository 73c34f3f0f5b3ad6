"""bifrost.client against a running `bifrost serve`: retries, errors that say what and which execution, the
async client, a resumed stream."""

from __future__ import annotations

import asyncio
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from bifrost.api import ExecutionOut, ExecutionStatus
from bifrost.client import (
    AsyncClient,
    Client,
    ConflictError,
    ConnectionFailedError,
    ExecutionFailedError,
    NotFoundError,
    Retry,
    WaitTimeoutError,
)
from bifrost_devtools.services import free_port
from tests.cli.conftest import ADMIN_KEY, Server
from tests.cli.proxy import proxy_to

QUICK = Retry(attempts=6, first_delay=0.1, max_delay=0.5)


def test_a_503_is_retried_and_the_workflow_starts_once(server: Server) -> None:
    marker = uuid.uuid4().int % 1_000_000
    with proxy_to(server.port) as proxy, Client(proxy.url, ADMIN_KEY, retry=QUICK) as client:
        proxy.unavailable = 2
        execution = client.execute("add", {"a": marker})
        assert proxy.answered_unavailable == 2
        assert isinstance(execution, ExecutionOut) and execution.result == {"sum": marker + 1}
        page = client.list_executions(workflow="add", limit=500)
    assert [e.parameters["a"] for e in page.executions].count(marker) == 1


def test_a_server_that_comes_up_late_is_reached_by_retrying(server: Server) -> None:
    port = free_port()
    retry = Retry(attempts=30, first_delay=0.2, max_delay=0.5)
    with Client(f"http://127.0.0.1:{port}", ADMIN_KEY, retry=retry) as client, ThreadPoolExecutor(1) as pool:
        listing = pool.submit(client.list_workflows)
        with proxy_to(server.port, port=port):
            assert "add" in [workflow.name for workflow in listing.result(timeout=60)]


def test_an_unreachable_server_raises_after_the_retries(server: Server) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with (
        Client(url, ADMIN_KEY, retry=Retry(attempts=2, first_delay=0.01)) as client,
        pytest.raises(ConnectionFailedError) as raised,
    ):
        client.session()
    assert raised.value.attempts == 2
    assert str(raised.value).startswith(f"cannot reach Bifrost at {url} (tried 2 times)")


def test_errors_carry_the_server_message_and_the_execution_id(server: Server) -> None:
    with Client(server.url, ADMIN_KEY) as client:
        done = client.run("add", {"a": 1})
        with pytest.raises(ConflictError) as conflict:
            client.cancel(done.execution_id)
        with pytest.raises(NotFoundError) as missing:
            client.get_logs("no-such-execution")
        with pytest.raises(ExecutionFailedError) as failed:
            client.run("explode", check=True)
    assert conflict.value.execution_id == done.execution_id
    assert conflict.value.status_code == 409
    assert conflict.value.message == f"execution '{done.execution_id}' already finished (Success)"
    assert missing.value.execution_id == "no-such-execution"
    assert missing.value.message == "no execution 'no-such-execution'"
    assert failed.value.status is ExecutionStatus.FAILED
    assert failed.value.execution.error is not None and failed.value.execution.error.message == "disk on fire"
    assert str(failed.value).endswith("Failed: RuntimeError; disk on fire")


def test_wait_gives_up_after_its_timeout_and_the_execution_goes_on(server: Server) -> None:
    with Client(server.url, ADMIN_KEY) as client:
        started = client.execute("nap", {"seconds": 60})
        with pytest.raises(WaitTimeoutError) as raised:
            client.wait(started.execution_id, timeout=1)
        assert raised.value.execution_id == started.execution_id
        assert not client.get_execution(started.execution_id).status.is_terminal
        client.cancel(started.execution_id)


def test_follow_ends_at_its_timeout_when_the_stream_stalls(server: Server) -> None:
    """The stream delivers some lines, then nothing more (a dead network): `follow` gives the lines that came,
    then `WaitTimeoutError` at its timeout, without waiting for a read to give up."""
    lines: list[int] = []
    with proxy_to(server.port) as proxy, Client(proxy.url, ADMIN_KEY, retry=QUICK) as client:
        proxy.stall_streams, proxy.stall_after_log_events = 1, 3
        started = client.execute("ticks", {"count": 200, "pause": 0.1})
        with pytest.raises(WaitTimeoutError) as raised:
            for event in client.follow(started.execution_id, timeout=4):
                if event.log is not None:
                    lines.append(event.log.line)
        client.cancel(started.execution_id)
    assert proxy.stalled == 1
    assert raised.value.execution_id == started.execution_id
    assert len(lines) >= 3 and lines == list(range(1, len(lines) + 1))


def test_following_a_finished_execution_gives_its_stored_log_line_by_line(server: Server) -> None:
    """The stream sends a stored log in batches of lines; `follow` gives them one event each, as a live line, and
    the pages give the same lines."""
    with Client(server.url, ADMIN_KEY) as client:
        execution = client.run("ticks", {"count": 2500})
        events = list(client.follow(execution.execution_id))
        pages = client.get_logs(execution.execution_id)
    logs = [event for event in events if event.log is not None]
    assert [event.log.line for event in logs if event.log is not None] == list(range(1, execution.log_count + 1))
    assert [event.last_line for event in logs] == list(range(1, execution.log_count + 1))
    assert [event.log for event in logs] == list(pages.logs)
    assert not pages.has_more
    assert events[-1].is_final


def test_the_async_client_follows_a_stream_cut_twice_without_losing_a_line(server: Server) -> None:
    async def follow(url: str) -> tuple[list[int], ExecutionOut]:
        async with AsyncClient(url, ADMIN_KEY, retry=QUICK) as client:
            started = await client.execute("ticks", {"count": 12, "pause": 0.1})
            lines = [
                event.log.line
                async for event in client.follow(started.execution_id)
                if event.log is not None
            ]  # fmt: skip
            return lines, await client.wait(started.execution_id)

    with proxy_to(server.port) as proxy:
        proxy.cut_streams, proxy.cut_after_log_events = 2, 4
        lines, execution = asyncio.run(follow(proxy.url))
    assert lines == list(range(1, execution.log_count + 1))
    assert execution.status is ExecutionStatus.SUCCESS and execution.result == 12
    assert len([after for after in proxy.stream_resumed_after if after]) >= 2
