from __future__ import annotations

import asyncio
import os
import sys
import textwrap
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy

from bifrost._internal.protocol import (
    RUNNER_EXIT_CODES,
    Event,
    FinishedEvent,
    OrganizationInfo,
    RunPayload,
    UserInfo,
    events_subject,
    parse_event,
)
from bifrost_devtools.runner_api import RunnerApi, ServedRunnerApi
from bifrost_devtools.services import NatsServer, running_nats
from bifrost_runner.connection import ensure_streams
from control_plane.security.nats_identities import AccountSigner, NatsCredentials

RUN_LIMIT_SECONDS = 150.0
"""A runner still running after this long is killed and its stderr shown: within pytest's own timeout, which
would show nothing of it."""


def is_finished(event: Event) -> bool:
    return event.type == "finished"


def logged(text: str) -> Callable[[Event], bool]:
    return lambda event: event.type == "log" and any(text in record.message for record in event.records)


@dataclass
class StoredEvent:
    event: Event
    msg_id: str | None


@dataclass
class RunnerRun:
    returncode: int
    stdout: str
    stderr: str
    events: list[StoredEvent]

    def of_type(self, kind: str) -> list[Any]:
        return [stored.event for stored in self.events if stored.event.type == kind]

    @property
    def finished(self) -> FinishedEvent:
        (finished,) = self.of_type("finished")
        return finished  # type: ignore[no-any-return]

    @property
    def log_records(self) -> list[Any]:
        return [record for event in self.of_type("log") for record in event.records]


@dataclass
class Harness:
    api: RunnerApi
    api_url: str
    nats: NatsServer
    nc: NATS
    js: JetStreamContext
    workspace: Path

    def write(self, source: str, file: str = "flows.py") -> None:
        path = self.workspace / file
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))

    def payload(self, function_name: str, file: str = "flows.py", **fields: Any) -> tuple[RunPayload, str]:
        """A payload for a new execution, registered with the API; returns it and its token."""
        payload = RunPayload(
            execution_id=str(uuid.uuid4()),
            workflow_name=function_name,
            file=file,
            function_name=function_name,
            parameters=fields.pop("parameters", {}),
            user=UserInfo(id="user-1", email="ada@example.com", name="Ada"),
            organization=OrganizationInfo(id="org-1", name="Acme"),
            timeout_seconds=fields.pop("timeout_seconds", 60),
            **fields,
        )
        return payload, self.api.register(payload)

    def nats_identity(self, execution_id: str) -> NatsCredentials:
        """The execution's own NATS identity, as the control plane mints it at launch."""
        return AccountSigner(self.nats.account_seed).runner(execution_id, datetime.now(UTC) + timedelta(hours=1))

    def env(self, execution_id: str, token: str) -> dict[str, str]:
        identity = self.nats_identity(execution_id)
        return {
            "PATH": os.environ["PATH"],
            "BIFROST_EXECUTION_ID": execution_id,
            "BIFROST_EXECUTION_TOKEN": token,
            "BIFROST_API_URL": self.api_url,
            "BIFROST_NATS_URL": self.nats.url,
            "BIFROST_NATS_JWT": identity.jwt,
            "BIFROST_NATS_SEED": identity.seed,
            "BIFROST_WORKSPACE_DIR": str(self.workspace),
            "BIFROST_TIMEOUT_SECONDS": "60",
        }

    async def start(self, execution_id: str, token: str) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bifrost_runner",
            env=self.env(execution_id, token),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )

    async def finish(self, process: asyncio.subprocess.Process, execution_id: str) -> RunnerRun:
        communicating = asyncio.ensure_future(process.communicate())
        done, _ = await asyncio.wait({communicating}, timeout=RUN_LIMIT_SECONDS)
        if not done:
            process.kill()  # its pipes close: what it wrote comes back all the same
            _, stderr = await communicating
            tail = stderr.decode()[-3000:]
            raise AssertionError(f"the runner did not finish within {RUN_LIMIT_SECONDS:.0f} s; its stderr ends: {tail}")
        stdout, stderr = communicating.result()
        assert process.returncode is not None
        reported = process.returncode in RUNNER_EXIT_CODES.values()
        events = await self.events(execution_id) if reported else []
        return RunnerRun(process.returncode, stdout.decode(), stderr.decode(), events)

    async def run(self, function_name: str, **fields: Any) -> RunnerRun:
        payload, token = self.payload(function_name, **fields)
        return await self.finish(await self.start(payload.execution_id, token), payload.execution_id)

    async def events(self, execution_id: str, until: Callable[[Event], bool] = is_finished) -> list[StoredEvent]:
        return await stored_events(self.js, execution_id, until)


async def stored_events(
    js: JetStreamContext, execution_id: str, until: Callable[[Event], bool] = is_finished
) -> list[StoredEvent]:
    """The execution's events from the stream, from the first up to the one `until` accepts."""
    subscription = await js.subscribe(
        events_subject(execution_id), ordered_consumer=True, deliver_policy=DeliverPolicy.ALL
    )
    stored: list[StoredEvent] = []
    try:
        while not stored or not until(stored[-1].event):
            msg = await subscription.next_msg(timeout=30)
            headers = msg.headers or {}
            stored.append(StoredEvent(parse_event(msg.data), headers.get("Nats-Msg-Id")))
    finally:
        await subscription.unsubscribe()
    return stored


@pytest.fixture(scope="session")
def runner_api() -> Iterator[ServedRunnerApi]:
    served = ServedRunnerApi(RunnerApi())
    served.start()
    yield served
    served.stop()


@pytest.fixture
def identity_nats(tmp_path: Path) -> Iterator[NatsServer]:
    """A NATS that lets in only identities of Bifrost's account, as the control plane sets it up."""
    with running_nats(tmp_path, identities=True, monitoring=True) as server:
        yield server


@pytest.fixture
async def harness(runner_api: ServedRunnerApi, identity_nats: NatsServer, tmp_path: Path) -> AsyncIterator[Harness]:
    """Runners under their own NATS identities; the harness reads their events as the control plane would."""
    nc = await nats.connect(
        identity_nats.url,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.1,
        user_credentials=identity_nats.admin_credentials(),
    )
    js = nc.jetstream()
    await ensure_streams(js)
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    yield Harness(runner_api.api, runner_api.url, identity_nats, nc, js, workspace)
    await nc.close()
