"""The runner's log collector against a real NATS: back-pressure while NATS is away, nothing lost."""

from __future__ import annotations

import asyncio
import io
import time
import uuid
from collections.abc import AsyncIterator

import pytest
from nats.aio.client import Client as NATS

from bifrost._internal.protocol import ExecutionStatus, FinishedEvent, LogEvent
from bifrost._internal.redaction import Redactor
from bifrost_devtools.services import NatsServer
from bifrost_runner import logs
from bifrost_runner.connection import connect_nats, ensure_streams
from bifrost_runner.logs import LogCollector
from bifrost_runner.publisher import EventPublisher
from tests.runner.conftest import stored_events


@pytest.fixture
async def nc(nats_server: NatsServer) -> AsyncIterator[NATS]:
    client = await connect_nats(nats_server.url, give_up_after=10)
    await ensure_streams(client.jetstream())
    yield client
    await client.close()


async def _finish_and_read_logs(nc: NATS, publisher: EventPublisher, execution_id: str) -> list[LogEvent]:
    """Close the execution's events as a runner does, wait until JetStream holds them all, and read its logs."""
    publisher.emit(FinishedEvent, status=ExecutionStatus.SUCCESS)
    assert await publisher.wait_acknowledged(60)
    await publisher.close()
    stored = await stored_events(nc.jetstream(), execution_id)
    return [event for event in (item.event for item in stored) if isinstance(event, LogEvent)]


async def test_a_workflow_logging_while_nats_is_away_is_held_back_and_loses_no_line(
    nats_server: NatsServer, nc: NATS, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logs, "MAX_BUFFERED_RECORDS", 2_000)
    monkeypatch.setattr(logs, "MAX_BACKLOG_BYTES", 64 * 1024)
    execution_id = str(uuid.uuid4())
    publisher = EventPublisher(nc, execution_id)
    await publisher.start()
    collector = LogCollector(publisher, io.StringIO(), Redactor())
    publishing = asyncio.create_task(collector.run())
    await asyncio.to_thread(nats_server.stop)
    logged = 0

    def log_lines() -> None:
        nonlocal logged
        for i in range(20_000):
            collector.add(0.0, "INFO", "flow", f"line {i}")
            logged += 1

    def wait_until_full() -> None:
        while not collector._full():
            time.sleep(0.01)

    workflow = asyncio.ensure_future(asyncio.to_thread(log_lines))
    # Far more than the buffer and the unacknowledged backlog hold: the workflow's thread waits for NATS.
    await asyncio.wait_for(asyncio.to_thread(wait_until_full), 60)
    assert not workflow.done()
    assert logged < 20_000
    await asyncio.to_thread(nats_server.start)
    await asyncio.wait_for(workflow, 60)
    publishing.cancel()
    collector.publish(final=True)
    events = await _finish_and_read_logs(nc, publisher, execution_id)
    messages = [record.message for event in events for record in event.records]
    assert sum(event.dropped for event in events) == 0
    assert messages == [f"line {i}" for i in range(20_000)]


async def test_a_burst_leaves_in_full_batches_and_the_rest_waits(nc: NATS) -> None:
    execution_id = str(uuid.uuid4())
    publisher = EventPublisher(nc, execution_id)
    await publisher.start()
    collector = LogCollector(publisher, io.StringIO(), Redactor())
    for i in range(logs.BATCH_RECORDS * 4 + 123):
        collector.add(0.0, "INFO", "flow", f"line {i}")
    collector.publish(final=False, full_batches_only=True)

    events = await _finish_and_read_logs(nc, publisher, execution_id)
    assert [len(event.records) for event in events] == [logs.BATCH_RECORDS] * 4


async def test_publishing_stops_when_cancelled_just_as_a_batch_fills(nc: NATS) -> None:
    """The runner cancels the publishing loop when the workflow returns; a batch may fill in the same instant."""
    publisher = EventPublisher(nc, str(uuid.uuid4()))
    await publisher.start()
    collector = LogCollector(publisher, io.StringIO(), Redactor())
    for yields_before_cancel in range(6):
        publishing = asyncio.create_task(collector.run())
        await asyncio.sleep(0)  # it waits for a batch
        for i in range(logs.BATCH_RECORDS):  # the last one wakes it
            collector.add(0.0, "INFO", "flow", f"line {i}")
        for _ in range(yields_before_cancel):
            await asyncio.sleep(0)
        publishing.cancel()
        done, _ = await asyncio.wait({publishing}, timeout=5)
        assert done, f"the publishing loop ran on after a cancel {yields_before_cancel} steps after its wake-up"
    await publisher.close()
