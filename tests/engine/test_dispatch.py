"""Queue and dispatch: launched once, within the limits, acked only after the backend accepted; cancel and
runner exits close executions with a reason. The backend here only records launches (the test plays the
runner by publishing its events on the real NATS)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

import pytest
import sqlalchemy
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from bifrost._internal.protocol import (
    QUEUE_SUBJECT,
    CancelRequest,
    Event,
    ExecutionStatus,
    FinishedEvent,
    StartedEvent,
    control_subject,
)
from bifrost_devtools.services import NatsServer
from control_plane.backends.base import LaunchSpec
from control_plane.engine import ExecutionNotFoundError
from control_plane.executions.repository import ExecutionRepository, IngestResult
from control_plane.security.tokens import TokenIssuer
from tests.engine.conftest import (
    EngineFactory,
    RecordingBackend,
    eventually,
    full_run,
    publish,
    read_execution,
    sqlite_only,
)


async def finish(runner_nats: NatsClient, execution_id: str, status: ExecutionStatus = ExecutionStatus.SUCCESS) -> None:
    js = runner_nats.jetstream()
    await publish(js, StartedEvent(execution_id=execution_id, seq=1))
    await publish(js, FinishedEvent(execution_id=execution_id, seq=2, status=status))


async def test_a_queued_execution_is_launched_once_with_its_token(
    start_engine: EngineFactory,
    new_execution: Callable[..., str],
    backend: RecordingBackend,
    tokens: TokenIssuer,
    runner_nats: NatsClient,
    db: sqlalchemy.Engine,
) -> None:
    engine = await start_engine(public_url="http://bifrost.test:8000")
    execution_id = new_execution("other")
    await engine.submit(execution_id, sync=False)
    await engine.submit(execution_id, sync=False)
    # A stray redelivery with another message id must not launch it again either.
    await runner_nats.jetstream().publish(QUEUE_SUBJECT, execution_id.encode())
    await eventually(lambda: read_execution(db, execution_id).backend == "recording", "the launch is recorded")
    await finish(runner_nats, execution_id)
    assert await engine.wait_terminal(execution_id, timeout=20)

    assert backend.launched_ids() == [execution_id]
    spec = backend.launches[0]
    assert spec.workflow_name == "other"
    assert spec.timeout_seconds == 120
    assert spec.api_url == "http://bifrost.test:8000"
    assert spec.nats_url == engine.nats_url
    claims = tokens.verify(spec.token)
    execution = read_execution(db, execution_id)
    assert (claims.execution_id, claims.user_id, claims.org_id) == (execution_id, execution.user_id, execution.org_id)


async def test_limits_hold_executions_until_others_finish(
    start_engine: EngineFactory,
    new_execution: Callable[..., str],
    backend: RecordingBackend,
    runner_nats: NatsClient,
) -> None:
    engine = await start_engine(max_concurrency=3, max_concurrency_per_workflow=2)
    hello = [new_execution("hello") for _ in range(4)]
    other = [new_execution("other") for _ in range(2)]
    for execution_id in hello + other:
        await engine.submit(execution_id, sync=False)

    await eventually(lambda: len(backend.launches) == 3, "three executions are launched")
    finished: set[str] = set()
    while len(finished) < 6:
        running = [execution_id for execution_id in backend.launched_ids() if execution_id not in finished]
        assert len(running) <= 3, "the global limit is 3"
        assert len([execution_id for execution_id in running if execution_id in hello]) <= 2, "hello's limit is 2"
        await finish(runner_nats, running[0])
        assert await engine.wait_terminal(running[0], timeout=20)
        finished.add(running[0])
        expected = min(6, len(finished) + 3)
        await eventually(lambda: len(backend.launches) == expected, "a freed slot is used")  # noqa: B023
    assert sorted(backend.launched_ids()) == sorted(hello + other)


async def test_a_sync_submit_launches_without_the_queue(
    start_engine: EngineFactory,
    execution_row: Callable[..., dict[str, Any]],
    backend: RecordingBackend,
    db: sqlalchemy.Engine,
) -> None:
    engine = await start_engine()
    row = execution_row()
    execution_id = row["id"]
    await engine.submit(execution_id, sync=True, new_row=row)
    assert backend.launched_ids() == [execution_id]
    launched = read_execution(db, execution_id)
    assert (launched.backend, launched.runner_ref) == ("recording", f"recorded-{execution_id}")


async def test_a_sync_submit_at_the_limit_waits_in_the_queue(
    start_engine: EngineFactory,
    new_execution: Callable[..., str],
    execution_row: Callable[..., dict[str, Any]],
    backend: RecordingBackend,
    runner_nats: NatsClient,
) -> None:
    engine = await start_engine(max_concurrency=1)
    first_row, second_row = execution_row(), execution_row()
    first, second = first_row["id"], second_row["id"]
    await engine.submit(first, sync=True, new_row=first_row)
    await engine.submit(second, sync=True, new_row=second_row)
    assert backend.launched_ids() == [first]
    await finish(runner_nats, first)
    await eventually(lambda: backend.launched_ids() == [first, second], "the queued sync execution is launched")


async def test_a_refused_launch_is_retried_before_the_message_is_acked(
    start_engine: EngineFactory, new_execution: Callable[..., str], db: sqlalchemy.Engine
) -> None:
    flaky = RecordingBackend(fail_launches=1)
    engine = await start_engine(backend_override=flaky)
    execution_id = new_execution()
    await engine.submit(execution_id, sync=False)
    await eventually(lambda: flaky.launched_ids() == [execution_id], "the second attempt launches it")
    assert read_execution(db, execution_id).status == ExecutionStatus.PENDING


async def test_a_refused_sync_launch_fails_the_execution(
    start_engine: EngineFactory, execution_row: Callable[..., dict[str, Any]], db: sqlalchemy.Engine
) -> None:
    engine = await start_engine(backend_override=RecordingBackend(fail_launches=1))
    row = execution_row()
    execution_id = row["id"]
    await engine.submit(execution_id, sync=True, new_row=row)
    assert await engine.wait_terminal(execution_id, timeout=5)
    execution = read_execution(db, execution_id)
    assert execution.status == ExecutionStatus.FAILED
    assert execution.error_type == "LaunchFailed"
    assert "no runner slot available" in (execution.error_message or "")


async def test_an_execution_of_an_unknown_workflow_fails_with_the_reason(
    start_engine: EngineFactory, new_execution: Callable[..., str], backend: RecordingBackend, db: sqlalchemy.Engine
) -> None:
    engine = await start_engine()
    execution_id = new_execution("renamed_away")
    await engine.submit(execution_id, sync=False)
    assert await engine.wait_terminal(execution_id, timeout=20)
    execution = read_execution(db, execution_id)
    assert execution.status == ExecutionStatus.FAILED
    assert execution.error_message == "workflow 'renamed_away' is not in the registry"
    assert backend.launches == []


async def test_submitting_an_unknown_execution_is_refused(start_engine: EngineFactory) -> None:
    engine = await start_engine()
    try:
        await engine.submit("missing-id", sync=False)
    except ExecutionNotFoundError as exc:
        assert str(exc) == "execution 'missing-id' does not exist"
    else:
        raise AssertionError("an unknown execution must be refused")


async def test_cancelling_a_waiting_execution_means_it_never_runs(
    start_engine: EngineFactory,
    new_execution: Callable[..., str],
    backend: RecordingBackend,
    runner_nats: NatsClient,
    db: sqlalchemy.Engine,
) -> None:
    engine = await start_engine(max_concurrency=1)
    running, waiting = new_execution(), new_execution()
    await engine.submit(running, sync=False)
    await engine.submit(waiting, sync=False)
    await eventually(lambda: backend.launched_ids() == [running], "the first execution is launched")
    await engine.cancel(waiting)
    assert read_execution(db, waiting).status == ExecutionStatus.CANCELLED

    await finish(runner_nats, running)
    assert await engine.wait_terminal(running, timeout=20)
    third = new_execution()
    await engine.submit(third, sync=False)
    await eventually(lambda: backend.launched_ids() == [running, third], "the next execution is launched")


async def test_cancelling_a_running_execution_asks_the_runner_then_kills_it(
    start_engine: EngineFactory,
    new_execution: Callable[..., str],
    execution_row: Callable[..., dict[str, Any]],
    backend: RecordingBackend,
    runner_nats: NatsClient,
    db: sqlalchemy.Engine,
) -> None:
    engine = await start_engine()
    requests: list[Msg] = []
    row = execution_row()
    execution_id = row["id"]

    async def on_request(msg: Msg) -> None:
        requests.append(msg)

    await runner_nats.subscribe(control_subject(execution_id), cb=on_request)
    await runner_nats.flush()
    await engine.submit(execution_id, sync=True, new_row=row)
    await publish(runner_nats.jetstream(), StartedEvent(execution_id=execution_id, seq=1))

    await engine.cancel(execution_id, reason="stop the import")
    assert await engine.wait_terminal(execution_id, timeout=20)
    await eventually(lambda: backend.kills == [execution_id], "the runner that ignored the request is killed")

    assert [CancelRequest.model_validate_json(msg.data).reason for msg in requests] == ["stop the import"]
    execution = read_execution(db, execution_id)
    assert execution.status == ExecutionStatus.CANCELLED
    assert execution.error_message == "stop the import; the runner did not stop within 0.3s and was killed"


async def test_a_runner_that_exits_without_reporting_fails_its_execution(
    start_engine: EngineFactory,
    execution_row: Callable[..., dict[str, Any]],
    backend: RecordingBackend,
    db: sqlalchemy.Engine,
) -> None:
    engine = await start_engine()
    row = execution_row()
    execution_id = row["id"]
    await engine.submit(execution_id, sync=True, new_row=row)
    await backend.exit(execution_id, -9, "runner was killed by signal SIGKILL")
    assert await engine.wait_terminal(execution_id, timeout=20)
    execution = read_execution(db, execution_id)
    assert execution.status == ExecutionStatus.FAILED
    assert execution.error_type == "RunnerExited"
    assert execution.error_message == "runner was killed by signal SIGKILL"


async def test_the_backend_is_told_how_each_run_ended_once(
    start_engine: EngineFactory,
    new_execution: Callable[..., str],
    backend: RecordingBackend,
    runner_nats: NatsClient,
    db: sqlalchemy.Engine,
) -> None:
    engine = await start_engine()
    reported, crashed = new_execution(), new_execution()
    with db.begin() as conn:
        conn.execute(sqlalchemy.text("UPDATE executions SET \"trigger\" = 'form'"))
    for execution_id in (reported, crashed):
        await engine.submit(execution_id, sync=True)
    js = runner_nats.jetstream()
    await publish(js, StartedEvent(execution_id=reported, seq=1))
    await publish(
        js,
        FinishedEvent(
            execution_id=reported,
            seq=2,
            status=ExecutionStatus.FAILED,
            error_type="RuntimeError",
            error_message="the ticket system refused",
        ),
    )
    await backend.exit(crashed, 137, "the runner ran out of memory")
    for execution_id in (reported, crashed):
        assert await engine.wait_terminal(execution_id, timeout=20)
    await eventually(lambda: len(backend.ended) == 2, "the backend is told of both ends")

    ends = {end.execution_id: end for end in backend.ended}
    assert (ends[reported].status, ends[reported].error_message) == (
        ExecutionStatus.FAILED,
        "the ticket system refused",
    )
    assert (ends[crashed].status, ends[crashed].error_message) == (
        ExecutionStatus.FAILED,
        "the runner ran out of memory",
    )
    assert ends[reported].started_at is not None
    assert ends[reported].finished_at is not None and ends[reported].finished_at >= ends[reported].started_at
    # The launch names who started the run and how, for the runner's labels.
    assert {(spec.user_id, spec.trigger) for spec in backend.launches} == {
        (read_execution(db, reported).user_id, "form")
    }


@sqlite_only
async def test_a_runner_exit_waits_for_its_last_events(
    start_engine: EngineFactory,
    new_execution: Callable[..., str],
    execution_row: Callable[..., dict[str, Any]],
    backend: RecordingBackend,
    runner_nats: NatsClient,
    db: sqlalchemy.Engine,
) -> None:
    engine = await start_engine(runner_exit_grace_seconds=0.0)
    row = execution_row()
    execution_id = row["id"]
    await engine.submit(execution_id, sync=True, new_row=row)
    js = runner_nats.jetstream()
    started, _lost, logs, finished = full_run(execution_id, log_events=2)
    # Event 2 never arrives, so ingest holds the rest back for a while; the runner has exited meanwhile.
    for event in (started, logs, finished):
        await publish(js, event)
    await backend.exit(execution_id, 0, "runner exited with code 0")

    assert await engine.wait_terminal(execution_id, timeout=30)
    assert read_execution(db, execution_id).status == ExecutionStatus.SUCCESS


async def test_a_started_engine_launches_waiting_executions_and_reconciles_launched_ones(
    start_engine: EngineFactory,
    new_execution: Callable[..., str],
    execution_row: Callable[..., dict[str, Any]],
    backend: RecordingBackend,
    db: sqlalchemy.Engine,
) -> None:
    first = await start_engine()
    launched_row = execution_row()
    launched = launched_row["id"]
    await first.submit(launched, sync=True, new_row=launched_row)
    await first.stop()
    never_queued = new_execution()  # recorded, never submitted: it waits all the same

    await start_engine()
    assert backend.reconciled[-1] == [launched]
    await eventually(lambda: backend.launched_ids() == [launched, never_queued], "the pending execution is launched")


class FinishesBeforeLaunchReturns(RecordingBackend):
    """A backend whose runner runs to its end, ingested, before `launch` returns: the launch is recorded only
    after the execution ended, as happens on a loaded machine."""

    def __init__(self, runner_nats: NatsClient, db: sqlalchemy.Engine) -> None:
        super().__init__()
        self._runner_nats = runner_nats
        self._db = db

        self.read_back = asyncio.Event()

    async def launch(self, spec: LaunchSpec) -> None:
        await super().launch(spec)
        await finish(self._runner_nats, spec.execution_id)
        await eventually(
            lambda: read_execution(self._db, spec.execution_id).status.is_terminal, "the execution ends in the store"
        )
        # Returns late: once the test read the execution back, or (when the end waits for this launch) soon.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2):
                await self.read_back.wait()


async def test_a_sync_answer_names_the_runner_even_when_the_run_ended_before_its_launch_was_recorded(
    start_engine: EngineFactory,
    execution_row: Callable[..., dict[str, Any]],
    runner_nats: NatsClient,
    db: sqlalchemy.Engine,
) -> None:
    backend = FinishesBeforeLaunchReturns(runner_nats, db)
    backend.read_back.set()  # the answer comes after the launch returned anyway
    engine = await start_engine(backend_override=backend)
    row = execution_row()
    execution_id = row["id"]
    with engine.watch_terminal(execution_id) as finished:
        await engine.submit(execution_id, sync=True, new_row=row)
        final_row = await asyncio.wait_for(finished, 20)
    # As the API answers: the row the waiter got, else the row read back.
    answer = final_row or read_execution(db, execution_id).model_dump()
    assert answer["status"] == ExecutionStatus.SUCCESS
    assert (answer["backend"], answer["runner_ref"]) == ("recording", f"recorded-{execution_id}")


async def test_the_end_of_a_queued_run_is_told_once_its_launch_is_recorded(
    start_engine: EngineFactory, new_execution: Callable[..., str], runner_nats: NatsClient, db: sqlalchemy.Engine
) -> None:
    backend = FinishesBeforeLaunchReturns(runner_nats, db)
    engine = await start_engine(backend_override=backend)
    execution_id = new_execution()
    with engine.watch_terminal(execution_id) as finished:
        await engine.submit(execution_id, sync=False)
        await asyncio.wait_for(finished, 20)
        told = read_execution(db, execution_id)
        backend.read_back.set()
    assert told.status == ExecutionStatus.SUCCESS
    assert (told.backend, told.runner_ref) == ("recording", f"recorded-{execution_id}")


async def test_the_backend_is_told_of_an_end_whose_launch_was_recorded_while_the_end_was_committed(
    start_engine: EngineFactory,
    new_execution: Callable[..., str],
    runner_nats: NatsClient,
    db: sqlalchemy.Engine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    backend = FinishesBeforeLaunchReturns(runner_nats, db)
    backend.read_back.set()
    engine = await start_engine(backend_override=backend)
    execution_id = new_execution()
    ingest = ExecutionRepository.ingest

    def ingest_while_the_launch_is_recorded(
        repository: ExecutionRepository, events: Mapping[str, Sequence[Event]], accept_gaps: Collection[str]
    ) -> IngestResult:
        """Commit the end (the execution read as not launched), then return only once the launch is recorded and
        no longer under way."""
        result = ingest(repository, events, accept_gaps)
        if any(change.terminal_status is not None for change in result.committed):
            deadline = time.monotonic() + 20
            while read_execution(db, execution_id).backend is None and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(0.3)  # for the dispatcher, on the event loop, to finish the launch it recorded
        return result

    monkeypatch.setattr(ExecutionRepository, "ingest", ingest_while_the_launch_is_recorded)
    with engine.watch_terminal(execution_id) as finished:
        await engine.submit(execution_id, sync=False)
        await asyncio.wait_for(finished, 30)

    await eventually(lambda: [end.execution_id for end in backend.ended] == [execution_id], "the backend is told")
    assert backend.ended[0].status == ExecutionStatus.SUCCESS


async def test_an_execution_submitted_while_nats_is_down_is_launched_once_it_is_back(
    start_engine: EngineFactory,
    new_execution: Callable[..., str],
    backend: RecordingBackend,
    nats_server: NatsServer,
    db: sqlalchemy.Engine,
) -> None:
    engine = await start_engine()
    nats_server.stop()
    try:
        while await engine.healthy():  # noqa: ASYNC110 (the engine tells no event of a lost connection)
            await asyncio.sleep(0.05)
        execution_id = new_execution("other")
        await engine.submit(execution_id, sync=False)
        assert read_execution(db, execution_id).status == ExecutionStatus.PENDING
        assert backend.launched_ids() == []
    finally:
        nats_server.start()
    await eventually(lambda: backend.launched_ids() == [execution_id], "the launch once NATS is back", within=60)
