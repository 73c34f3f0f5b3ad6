"""The engine on a NATS that checks identities: it connects under its own, gives each runner one of its own, and
keeps working when that NATS restarts. Runners here are played by the test, connecting as a runner does."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy
from pydantic import SecretStr

from bifrost._internal.protocol import ExecutionStatus, FinishedEvent, StartedEvent
from bifrost_devtools.services import NatsServer, running_nats
from bifrost_runner.config import RunnerConfig
from bifrost_runner.connection import connect_runner_nats
from bifrost_runner.publisher import EventPublisher
from control_plane.engine import ExecutionEngine
from control_plane.security.nats_identities import NatsKeyError, NatsKeys
from tests.engine.conftest import EngineFactory, RecordingBackend, eventually, read_execution, sqlite_only

pytestmark = sqlite_only


@pytest.fixture
def identity_nats(tmp_path: Path) -> Iterator[NatsServer]:
    folder = tmp_path / "identities"  # beside the engine fixtures' own NATS
    folder.mkdir()
    with running_nats(folder, identities=True) as server:
        yield server


@pytest.fixture
async def engine(start_engine: EngineFactory, identity_nats: NatsServer) -> AsyncIterator[ExecutionEngine]:
    yield await start_engine(nats_url=identity_nats.url, nats_account_seed=SecretStr(identity_nats.account_seed))


async def run_as_its_runner(backend: RecordingBackend, execution_id: str) -> None:
    """Report a successful run with the identity the engine launched the execution with."""
    await eventually(lambda: execution_id in backend.launched_ids(), "the execution is launched")
    spec = next(spec for spec in backend.launches if spec.execution_id == execution_id)
    assert spec.nats_credentials is not None
    nc = await connect_runner_nats(RunnerConfig.from_env(spec.runner_env()), give_up_after=30)
    publisher = EventPublisher(nc, execution_id)
    await publisher.start()
    try:
        publisher.emit(StartedEvent, workspace_revision="rev-1")
        publisher.emit(FinishedEvent, status=ExecutionStatus.SUCCESS, duration_ms=1.0)
        assert await publisher.wait_acknowledged(60)
    finally:
        await publisher.close()
        await nc.close()


async def healthy_again(engine: ExecutionEngine) -> None:
    """Wait until the engine is back on NATS, under its own identity, with its streams."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while not await engine.healthy():
        assert loop.time() < deadline, "the engine is not back on NATS after 60 s"
        await asyncio.sleep(0.1)


async def test_runners_report_under_their_own_identity_across_a_nats_restart(
    engine: ExecutionEngine,
    identity_nats: NatsServer,
    backend: RecordingBackend,
    new_execution: Callable[..., str],
    db: sqlalchemy.Engine,
) -> None:
    before = new_execution()
    await engine.submit(before, sync=False)
    await run_as_its_runner(backend, before)
    assert await engine.wait_terminal(before, timeout=30)

    identity_nats.restart()
    await healthy_again(engine)
    after = new_execution()
    await engine.submit(after, sync=False)
    await run_as_its_runner(backend, after)

    assert await engine.wait_terminal(after, timeout=60)
    assert [read_execution(db, execution_id).status for execution_id in (before, after)] == [
        ExecutionStatus.SUCCESS,
        ExecutionStatus.SUCCESS,
    ]
    assert await engine.healthy()


async def test_an_external_nats_without_the_account_seed_is_named_unisolated_at_start(
    start_engine: EngineFactory, caplog: pytest.LogCaptureFixture, backend: RecordingBackend
) -> None:
    with caplog.at_level(logging.WARNING, logger="control_plane.engine.engine"):
        await start_engine()
    assert any("BIFROST_NATS_ACCOUNT_SEED is not set" in record.getMessage() for record in caplog.records)


async def test_a_seed_that_is_not_an_account_seed_is_refused_by_name(
    start_engine: EngineFactory, identity_nats: NatsServer
) -> None:
    with pytest.raises(NatsKeyError, match="BIFROST_NATS_ACCOUNT_SEED is the nkey seed of an operator"):
        await start_engine(nats_url=identity_nats.url, nats_account_seed=SecretStr(NatsKeys.generate().operator))


async def test_a_seed_that_is_no_key_at_all_is_refused_by_name(
    start_engine: EngineFactory, identity_nats: NatsServer
) -> None:
    with pytest.raises(NatsKeyError, match="BIFROST_NATS_ACCOUNT_SEED is neither a valid nkey seed nor 32 bytes"):
        await start_engine(nats_url=identity_nats.url, nats_account_seed=SecretStr("c2hvcnQ="))
