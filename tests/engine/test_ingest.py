"""Runner events published on a real NATS reach the database once, in order, and wake waiters and live
subscribers only after the commit."""

from __future__ import annotations

import json
from collections.abc import Callable

import sqlalchemy
from nats.aio.client import Client as NatsClient
from prometheus_client import REGISTRY

from bifrost._internal.protocol import (
    EVENTS_STREAM,
    EVENTS_SUBJECT_WILDCARD,
    ExecutionStatus,
    FinishedEvent,
    ResultEvent,
    StartedEvent,
    VariablesEvent,
    events_subject,
)
from bifrost_devtools.services import NatsServer
from control_plane.engine import ExecutionNotFoundError, LiveEvent
from control_plane.engine.streams import INGEST_CONSUMER, ensure_streams, ingest_consumer_config
from control_plane.executions.repository import ExecutionRepository
from control_plane.executions.transitions import ExecutionChanges
from tests.engine.conftest import (
    EngineFactory,
    eventually,
    full_run,
    log_event,
    publish,
    read_execution,
    read_logs,
    sqlite_only,
)


async def test_a_run_is_recorded_completely(
    start_engine: EngineFactory, new_execution: Callable[..., str], runner_nats: NatsClient, db: sqlalchemy.Engine
) -> None:
    engine = await start_engine()
    execution_id = new_execution()
    js = runner_nats.jetstream()
    await publish(js, StartedEvent(execution_id=execution_id, seq=1, workspace_revision="rev-7"))
    await publish(js, log_event(execution_id, 2, "connecting", "device sent \x00"))
    await publish(js, VariablesEvent(execution_id=execution_id, seq=3, variables={"count": 2}))
    await publish(js, ResultEvent(execution_id=execution_id, seq=4, result={"users": ["ada", "bob"]}))
    await publish(
        js,
        FinishedEvent(
            execution_id=execution_id,
            seq=5,
            status=ExecutionStatus.COMPLETED_WITH_ERRORS,
            error_message="one user skipped",
            duration_ms=41.0,
        ),
    )

    assert await engine.wait_terminal(execution_id, timeout=20)
    execution = read_execution(db, execution_id)
    assert execution.status == ExecutionStatus.COMPLETED_WITH_ERRORS
    assert execution.result == {"users": ["ada", "bob"]}
    assert execution.variables == {"count": 2}
    assert execution.error_message == "one user skipped"
    assert execution.workspace_revision == "rev-7"
    assert execution.duration_ms == 41.0
    assert execution.started_at is not None and execution.finished_at is not None
    assert execution.last_event_seq == 5
    assert execution.log_count == 2
    # PostgreSQL text cannot hold NUL: it is replaced rather than stalling ingest.
    assert [(log.line, log.message) for log in read_logs(db, execution_id)] == [
        (1, "connecting"),
        (2, "device sent \ufffd"),
    ]


async def test_redelivered_and_republished_events_are_applied_once(
    start_engine: EngineFactory, new_execution: Callable[..., str], runner_nats: NatsClient, db: sqlalchemy.Engine
) -> None:
    engine = await start_engine()
    execution_id = new_execution()
    js = runner_nats.jetstream()
    events = full_run(execution_id)
    for event in events[:-1]:
        await publish(js, event)
        # The same event again without a message id: JetStream keeps it, ingest must skip it.
        await publish(js, event, deduplicate=False)
    await publish(js, events[-1])

    assert await engine.wait_terminal(execution_id, timeout=20)
    assert [log.message for log in read_logs(db, execution_id)] == [f"line {n}" for n in range(1, 7)]
    assert read_execution(db, execution_id).log_count == 6


async def test_events_arriving_out_of_order_are_applied_in_order(
    start_engine: EngineFactory, new_execution: Callable[..., str], runner_nats: NatsClient, db: sqlalchemy.Engine
) -> None:
    engine = await start_engine()
    execution_id = new_execution()
    js = runner_nats.jetstream()
    first, second, third, finished = full_run(execution_id, log_events=2)
    for event in (first, third, second, finished):
        await publish(js, event)

    assert await engine.wait_terminal(execution_id, timeout=20)
    assert [log.message for log in read_logs(db, execution_id)] == [f"line {n}" for n in range(1, 7)]
    assert [log.line for log in read_logs(db, execution_id)] == list(range(1, 7))


@sqlite_only
async def test_an_event_that_never_arrives_is_noted_and_the_rest_applied(
    start_engine: EngineFactory, new_execution: Callable[..., str], runner_nats: NatsClient, db: sqlalchemy.Engine
) -> None:
    engine = await start_engine()
    execution_id = new_execution()
    js = runner_nats.jetstream()
    started, _never_published, logs, finished = full_run(execution_id, log_events=2)
    for event in (started, logs, finished):
        await publish(js, event)

    assert await engine.wait_terminal(execution_id, timeout=20)
    messages = [log.message for log in read_logs(db, execution_id)]
    assert messages == ["runner events 2 to 2 never arrived", "line 4", "line 5", "line 6"]
    assert read_execution(db, execution_id).status == ExecutionStatus.SUCCESS


async def test_a_final_status_is_never_overwritten(
    start_engine: EngineFactory, new_execution: Callable[..., str], runner_nats: NatsClient, db: sqlalchemy.Engine
) -> None:
    engine = await start_engine()
    execution_id = new_execution()
    js = runner_nats.jetstream()
    for event in full_run(execution_id, log_events=1):
        await publish(js, event)
    assert await engine.wait_terminal(execution_id, timeout=20)

    await publish(js, StartedEvent(execution_id=execution_id, seq=4))
    await publish(js, FinishedEvent(execution_id=execution_id, seq=5, status=ExecutionStatus.FAILED))
    await publish(js, log_event(execution_id, 6, "late line"))
    await eventually(lambda: read_execution(db, execution_id).last_event_seq == 6, "the late events are ingested")

    execution = read_execution(db, execution_id)
    assert execution.status == ExecutionStatus.SUCCESS
    assert execution.error_type is None
    assert read_logs(db, execution_id)[-1].message == "late line"


async def test_nothing_is_lost_or_doubled_across_an_engine_restart(
    start_engine: EngineFactory, new_execution: Callable[..., str], runner_nats: NatsClient, db: sqlalchemy.Engine
) -> None:
    execution_id = new_execution()
    js = runner_nats.jetstream()
    events = full_run(execution_id, lines_per_event=5, log_events=6)
    first = await start_engine()
    for event in events[:3]:
        await publish(js, event)
    await eventually(lambda: read_execution(db, execution_id).last_event_seq == 3, "the first events are ingested")
    await first.stop()

    for event in events[3:]:
        await publish(js, event)
    # A crashed engine may have committed events it never acked: they come again and must be skipped.
    ExecutionRepository(db).ingest({execution_id: events[3:5]}, accept_gaps=())

    second = await start_engine()
    assert await second.wait_terminal(execution_id, timeout=20)
    assert [log.line for log in read_logs(db, execution_id)] == list(range(1, 31))
    assert [log.message for log in read_logs(db, execution_id)] == [f"line {n}" for n in range(1, 31)]


@sqlite_only
async def test_events_a_dead_engine_fetched_but_never_acked_are_not_skipped(
    start_engine: EngineFactory, new_execution: Callable[..., str], runner_nats: NatsClient, db: sqlalchemy.Engine
) -> None:
    execution_id = new_execution()
    js = runner_nats.jetstream()
    await ensure_streams(js)
    events = full_run(execution_id, log_events=3)
    dead_engine = await js.pull_subscribe(
        EVENTS_SUBJECT_WILDCARD, durable=INGEST_CONSUMER, stream=EVENTS_STREAM, config=ingest_consumer_config()
    )
    for event in events[:3]:
        await publish(js, event)
    assert len(await dead_engine.fetch(3, timeout=10)) == 3
    await dead_engine.unsubscribe()
    for event in events[3:]:
        await publish(js, event)

    engine = await start_engine()
    assert await engine.wait_terminal(execution_id, timeout=30)
    assert [log.message for log in read_logs(db, execution_id)] == [f"line {n}" for n in range(1, 10)]


@sqlite_only
async def test_ingest_resumes_after_nats_restarts(
    start_engine: EngineFactory,
    new_execution: Callable[..., str],
    runner_nats: NatsClient,
    nats_server: NatsServer,
    db: sqlalchemy.Engine,
) -> None:
    engine = await start_engine()
    execution_id = new_execution()
    js = runner_nats.jetstream()
    events = full_run(execution_id, log_events=4)
    for event in events[:3]:
        await publish(js, event)
    await eventually(lambda: read_execution(db, execution_id).last_event_seq == 3, "the first events are ingested")

    nats_server.restart()
    await eventually(lambda: runner_nats.is_connected, "the runner reconnects")
    for event in events[3:]:
        await publish(js, event)

    assert await engine.wait_terminal(execution_id, timeout=30)
    assert [log.line for log in read_logs(db, execution_id)] == list(range(1, 13))
    assert await engine.healthy()


async def test_many_log_lines_are_numbered_without_gaps(
    start_engine: EngineFactory, new_execution: Callable[..., str], runner_nats: NatsClient, db: sqlalchemy.Engine
) -> None:
    engine = await start_engine()
    execution_ids = [new_execution() for _ in range(3)]
    js = runner_nats.jetstream()
    runs = [full_run(execution_id, lines_per_event=100, log_events=20) for execution_id in execution_ids]
    for step in range(len(runs[0])):
        for run in runs:
            await publish(js, run[step])

    for execution_id in execution_ids:
        assert await engine.wait_terminal(execution_id, timeout=30)
        assert [log.line for log in read_logs(db, execution_id)] == list(range(1, 2001))
        assert read_execution(db, execution_id).log_count == 2000


async def test_live_subscribers_get_committed_changes_in_order(
    start_engine: EngineFactory, new_execution: Callable[..., str], runner_nats: NatsClient, db: sqlalchemy.Engine
) -> None:
    engine = await start_engine()
    execution_id = new_execution()
    js = runner_nats.jetstream()
    received: list[LiveEvent] = []
    async with engine.live(execution_id) as events:
        await publish(js, StartedEvent(execution_id=execution_id, seq=1))
        await publish(js, log_event(execution_id, 2, "one", "two"))
        await publish(js, ResultEvent(execution_id=execution_id, seq=3, result=[1, 2]))
        await publish(js, FinishedEvent(execution_id=execution_id, seq=4, status=ExecutionStatus.SUCCESS))
        async for event in events:
            json.dumps(event.data)  # what the SSE route sends
            if event.kind == "log":
                # Delivered after the commit: the line is already in the database.
                assert event.id in [log.line for log in read_logs(db, execution_id)]
            received.append(event)

    assert [(event.kind, event.id) for event in received] == [
        ("status", 1),
        ("log", 1),
        ("log", 2),
        ("result", 3),
        ("status", 4),
    ]
    assert received[0].data["status"] == "Running"
    assert received[2].data["message"] == "two"
    assert received[2].data["ts"].endswith("Z")
    assert received[3].data == {"result": [1, 2]}
    assert received[4].data["status"] == "Success"


async def test_waiting_on_an_unfinished_or_unknown_execution(
    start_engine: EngineFactory, new_execution: Callable[..., str]
) -> None:
    engine = await start_engine()
    execution_id = new_execution()
    assert not await engine.wait_terminal(execution_id, timeout=0.1)
    try:
        await engine.wait_terminal("no-such-execution", timeout=0.1)
    except ExecutionNotFoundError as exc:
        assert "no-such-execution" in str(exc)
    else:
        raise AssertionError("waiting on an unknown execution must fail")


async def test_a_status_written_meanwhile_is_not_overwritten(
    new_execution: Callable[..., str], db: sqlalchemy.Engine
) -> None:
    store = ExecutionRepository(db)
    execution_id = new_execution()
    store.ingest({execution_id: [StartedEvent(execution_id=execution_id, seq=1)]}, accept_gaps=())
    with db.connect() as conn:
        changes = ExecutionChanges(ExecutionRepository.lock_rows(conn, [execution_id])[execution_id])
    # Between ingest's read and its write, the execution is cancelled.
    cancelled = store.close(execution_id, ExecutionStatus.CANCELLED, error_type="Cancelled", error_message="stop")
    assert cancelled is not None
    changes.apply(FinishedEvent(execution_id=execution_id, seq=2, status=ExecutionStatus.SUCCESS))
    with db.begin() as conn:
        ExecutionRepository.write(conn, changes)

    execution = read_execution(db, execution_id)
    assert execution.status == ExecutionStatus.CANCELLED
    assert execution.last_event_seq == 2
    assert changes.committed.terminal_status is None
    assert [change.kind for change in changes.committed.changes] == []


def _rejected(reason: str) -> float:
    return REGISTRY.get_sample_value("bifrost_events_rejected_total", {"reason": reason}) or 0.0


@sqlite_only
async def test_an_event_naming_another_execution_than_its_subject_is_rejected_and_counted(
    start_engine: EngineFactory, new_execution: Callable[..., str], runner_nats: NatsClient, db: sqlalchemy.Engine
) -> None:
    """A runner may publish on its own execution's subject only; an event in which it claims to be another
    execution is not applied to either."""
    engine = await start_engine()
    victim, forger = new_execution(), new_execution()
    js = runner_nats.jetstream()
    rejected_before = _rejected("wrong_subject")
    forged = FinishedEvent(execution_id=victim, seq=1, status=ExecutionStatus.FAILED, error_message="forged")
    await js.publish(events_subject(forger), forged.model_dump_json().encode())
    await eventually(lambda: _rejected("wrong_subject") == rejected_before + 1, "the forged event is counted")

    for event in full_run(victim):
        await publish(js, event)
    assert await engine.wait_terminal(victim, timeout=20)
    assert read_execution(db, victim).status == ExecutionStatus.SUCCESS
    assert read_execution(db, victim).error_message is None
    assert read_execution(db, forger).status == ExecutionStatus.PENDING
    assert read_execution(db, forger).last_event_seq == 0
