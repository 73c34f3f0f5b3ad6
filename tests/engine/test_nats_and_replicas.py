"""The embedded nats-server (started, adopted after a crash, stopped), several replicas sharing one NATS and
database, and choosing a backend."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import Callable
from pathlib import Path

import nats
import pytest
import sqlalchemy
from nats.aio.client import Client as NatsClient
from nats.aio.client import RawCredentials
from nats.js.api import AckPolicy, ConsumerConfig

from bifrost._internal.protocol import (
    EVENTS_STREAM,
    QUEUE_STREAM,
    QUEUE_SUBJECT,
    ExecutionStatus,
    FinishedEvent,
    StartedEvent,
    nats_credentials_file,
)
from bifrost_devtools.services import NatsServer
from control_plane.backends import BackendNotAvailableError, create_backend
from control_plane.backends.base import RunnerExit
from control_plane.backends.container import ContainerBackend
from control_plane.backends.local import LocalBackend
from control_plane.engine import LiveEvent, LiveStreamLaggedError
from control_plane.engine.live import SUBSCRIBER_BACKLOG_LIMIT, LiveHub
from control_plane.engine.nats_server import EmbeddedNats
from control_plane.engine.streams import (
    DISPATCH_ACK_WAIT_SECONDS,
    DISPATCH_CONSUMER,
    QUEUE_STREAM_CONFIG,
    ensure_streams,
)
from control_plane.security.nats_identities import KEYS_FILE, AccountSigner, NatsKeys
from control_plane.settings import Settings
from tests.engine.conftest import EngineFactory, eventually, log_event, publish, sqlite_only


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split()[2] != "Z"


@sqlite_only
async def test_the_engine_starts_its_own_nats_when_none_is_configured(
    start_engine: EngineFactory, tmp_path: Path
) -> None:
    engine = await start_engine(nats_url=None)
    assert engine.nats_url.startswith("nats://127.0.0.1:")
    assert await engine.healthy()
    assert (tmp_path / "data" / "nats" / "server.json").exists()
    await engine.stop()
    assert not await engine.healthy()
    assert not (tmp_path / "data" / "nats" / "server.json").exists()


def test_a_nats_server_left_by_a_killed_control_plane_is_adopted(tmp_path: Path) -> None:
    keys = NatsKeys.generate()
    crashed = EmbeddedNats(tmp_path / "nats", keys)
    url = crashed.start()
    # `crashed` is never stopped, as after a SIGKILL: its server keeps running and holds the store.
    restarted = EmbeddedNats(tmp_path / "nats", NatsKeys.model_validate_json(keys.model_dump_json()))
    assert restarted.start() == url
    pid = crashed.pid
    assert pid is not None and _alive(pid)
    restarted.stop()
    assert crashed._process is not None
    crashed._process.wait(timeout=10)
    assert not _alive(pid)


def test_a_nats_server_left_with_other_identities_is_replaced_not_adopted(tmp_path: Path) -> None:
    left = EmbeddedNats(tmp_path / "nats", NatsKeys.generate())
    left.start()
    keys = NatsKeys.generate()
    replacement = EmbeddedNats(tmp_path / "nats", keys)
    try:
        replacement.start()
        assert left._process is not None
        left._process.wait(timeout=30)
        assert replacement.pid != left.pid
        assert AccountSigner(keys.account).account_public_key in (tmp_path / "nats" / "nats-server.conf").read_text()
    finally:
        replacement.stop()


def test_a_dead_nats_server_is_replaced_on_the_same_port(tmp_path: Path) -> None:
    first = EmbeddedNats(tmp_path / "nats", NatsKeys.generate())
    url = first.start()
    assert first._process is not None
    first._process.send_signal(signal.SIGKILL)
    first._process.wait()
    second = EmbeddedNats(tmp_path / "nats", NatsKeys.generate())
    try:
        assert second.start() == url
        assert second._process is not None and second._process.poll() is None
    finally:
        second.stop()


@sqlite_only
async def test_the_engine_restarts_its_nats_server_when_it_dies_with_what_it_stored(
    start_engine: EngineFactory, tmp_path: Path
) -> None:
    engine = await start_engine(nats_url=None)
    state = tmp_path / "data" / "nats" / "server.json"
    killed = json.loads(state.read_text())["pid"]
    identity = AccountSigner(NatsKeys.load_or_create(tmp_path / "data" / KEYS_FILE).account).control_plane()
    client = await nats.connect(
        engine.nats_url,
        user_credentials=RawCredentials(nats_credentials_file(identity.jwt, identity.seed)),
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.1,
    )
    try:
        js = client.jetstream()
        await publish(js, StartedEvent(execution_id="stored-before", seq=1))
        stored = (await js.stream_info(EVENTS_STREAM)).state.messages

        os.kill(killed, signal.SIGKILL)
        assert not await engine.healthy()

        await eventually(lambda: json.loads(state.read_text())["pid"] != killed, "a new nats-server is started")
        for _attempt in range(200):
            if await engine.healthy():
                break
            await asyncio.sleep(0.1)
        assert await engine.healthy()
        assert (await js.stream_info(EVENTS_STREAM)).state.messages == stored
    finally:
        await client.close()


async def test_an_earlier_queue_consumer_takes_the_short_ack_wait(nats_server: NatsServer) -> None:
    client = await nats.connect(nats_server.url)
    try:
        js = client.jetstream()
        await js.add_stream(config=QUEUE_STREAM_CONFIG)
        earlier = ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, ack_wait=60.0)
        await js.pull_subscribe(QUEUE_SUBJECT, durable=DISPATCH_CONSUMER, stream=QUEUE_STREAM, config=earlier)
        await ensure_streams(js)
        info = await js.consumer_info(QUEUE_STREAM, DISPATCH_CONSUMER)
        assert info.config.ack_wait == DISPATCH_ACK_WAIT_SECONDS
    finally:
        await client.close()


@sqlite_only
async def test_a_replica_hears_of_changes_another_replica_ingested(
    start_engine: EngineFactory,
    new_execution: Callable[..., str],
    runner_nats: NatsClient,
    db: sqlalchemy.Engine,
) -> None:
    first, second = await start_engine(), await start_engine()
    execution_id = new_execution()
    js = runner_nats.jetstream()
    received: list[LiveEvent] = []
    async with second.live(execution_id) as events:
        await publish(js, StartedEvent(execution_id=execution_id, seq=1))
        for seq in range(2, 12):
            await publish(js, log_event(execution_id, seq, f"line {seq - 1}"))
        await publish(js, FinishedEvent(execution_id=execution_id, seq=12, status=ExecutionStatus.SUCCESS))
        assert await first.wait_terminal(execution_id, timeout=20)
        assert await second.wait_terminal(execution_id, timeout=20)
        async for event in events:
            received.append(event)

    assert sorted(event.id for event in received if event.kind == "log") == list(range(1, 11))
    assert {event.data["message"] for event in received if event.kind == "log"} == {f"line {n}" for n in range(1, 11)}
    assert received[-1].kind == "status" and received[-1].data["status"] == "Success"


async def test_a_subscriber_that_falls_too_far_behind_is_told_so() -> None:
    hub = LiveHub()
    subscription = hub.subscribe("execution-1")
    events = [LiveEvent(kind="log", id=n, data={}) for n in range(1, SUBSCRIBER_BACKLOG_LIMIT + 2)]
    hub.deliver("execution-1", events, terminal=False)
    with pytest.raises(LiveStreamLaggedError, match="execution-1"):
        await anext(subscription)


def test_the_configured_backend_is_created(tmp_path: Path) -> None:
    assert isinstance(create_backend(Settings(data_dir=tmp_path, backend="local")), LocalBackend)
    assert isinstance(create_backend(Settings(data_dir=tmp_path, backend="docker")), ContainerBackend)


async def test_a_container_backend_without_its_cli_refuses_to_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    backend = create_backend(Settings(data_dir=tmp_path, backend="docker"))

    async def on_exit(_: RunnerExit) -> None: ...

    with pytest.raises(BackendNotAvailableError, match="`docker` command, which is not on PATH"):
        await backend.start(on_exit)


async def test_lines_another_replica_committed_are_read_back_before_the_terminal_status() -> None:
    def line(number: int) -> LiveEvent:
        return LiveEvent(kind="log", id=number, data={"line": number})

    async def read_logs(execution_id: str, first: int, last: int) -> list[LiveEvent]:
        assert execution_id == "execution-1"
        return [line(number) for number in range(first, min(last, 10) + 1)]

    hub = LiveHub()
    subscription = hub.subscribe("execution-1", read_logs)
    subscription.skip_lines_through(2)  # lines 1 and 2 came from the database backlog
    success = LiveEvent(kind="status", id=12, data={"status": "Success"})
    # Lines 5 and 8-10 were committed by another replica whose announcement has not arrived yet.
    hub.deliver("execution-1", [line(3), line(4), line(6), line(7), success], terminal=True)

    received = [event async for event in subscription]

    assert [event.id for event in received if event.kind == "log"] == [3, 4, 6, 7, 5, 8, 9, 10]
    assert received[-1] == success
