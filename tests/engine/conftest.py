from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import nats
import nats.errors
import pytest
import sqlalchemy
from cryptography.fernet import Fernet
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from sqlalchemy import create_engine as create_plain_engine
from sqlalchemy import text
from sqlmodel import Session, SQLModel, select

from bifrost._internal.protocol import (
    Event,
    ExecutionStatus,
    FinishedEvent,
    LogEvent,
    LogRecord,
    StartedEvent,
    events_subject,
    message_id,
)
from bifrost_devtools.services import NatsServer
from control_plane.backends.base import ClaimChannel, ExitCallback, LaunchSpec, RunEnd, RunnerDetails, RunnerExit
from control_plane.db.models import Execution, ExecutionLog, Organization, User, Workflow, utcnow
from control_plane.db.session import make_engine
from control_plane.engine import ExecutionEngine
from control_plane.security.encryption import SecretCipher
from control_plane.security.tokens import TokenIssuer
from control_plane.settings import Settings

TOKEN_KEY = b"engine-test-signing-key-of-sufficient-length"

# For tests of waiting and wiring rather than of SQL: one database is enough.
sqlite_only = pytest.mark.parametrize("db", ["sqlite"], indirect=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sqlalchemy.ExecutionEngine]:
    """A fresh, empty database with every table, on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'bifrost.db'}")
        SQLModel.metadata.create_all(engine)
        yield engine
        engine.dispose()
        return
    server_url: str = request.getfixturevalue("postgres_url")
    name = f"engine_{uuid.uuid4().hex}"
    admin = create_plain_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine = make_engine(server_url.rsplit("/", 1)[0] + f"/{name}")
    SQLModel.metadata.create_all(engine)
    yield engine
    engine.dispose()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def owner(db: sqlalchemy.Engine) -> User:
    with Session(db, expire_on_commit=False) as session:
        org = Organization(name="Acme")
        user = User(email="ops@acme.test", name="Ops", org_id=org.id)
        session.add(org)
        session.commit()
        session.add(user)
        for name, timeout in (("hello", 60), ("other", 120)):
            session.add(Workflow(name=name, file=f"{name}.py", function_name=name, timeout_seconds=timeout))
        session.commit()
        return user


@pytest.fixture
def new_execution(db: sqlalchemy.Engine, owner: User) -> Callable[..., str]:
    def create(workflow: str = "hello") -> str:
        with Session(db) as session:
            execution = Execution(org_id=owner.org_id, user_id=owner.id, workflow_name=workflow, parameters={})
            session.add(execution)
            session.commit()
            return execution.id

    return create


@pytest.fixture
def execution_row(owner: User) -> Callable[..., dict[str, Any]]:
    """The row of a new execution, not recorded yet: `engine.submit(row["id"], sync=True, new_row=row)` records it
    as the API does, in the transaction that claims it. (A recorded execution waits, and any dispatcher may claim
    it before the submit does.)"""

    def make(workflow: str = "hello") -> dict[str, Any]:
        execution = Execution(org_id=owner.org_id, user_id=owner.id, workflow_name=workflow, parameters={})
        return {column: value for column, value in execution.model_dump().items() if value is not None}

    return make


def read_execution(db: sqlalchemy.Engine, execution_id: str) -> Execution:
    with Session(db, expire_on_commit=False) as session:
        execution = session.get(Execution, execution_id)
        assert execution is not None
        return execution


def read_logs(db: sqlalchemy.Engine, execution_id: str) -> list[ExecutionLog]:
    with Session(db) as session:
        query = select(ExecutionLog).where(ExecutionLog.execution_id == execution_id).order_by(ExecutionLog.line)  # type: ignore[arg-type]
        return list(session.exec(query))


async def eventually(condition: Callable[[], bool], what: str, within: float = 20.0) -> None:
    """Poll until `condition()` holds; fail naming `what` if it never does."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"never happened: {what}")
        await asyncio.sleep(0.02)


class RecordingBackend:
    """Records launches and kills instead of starting runners; the test plays the runner's part."""

    name = "recording"

    def __init__(self, fail_launches: int = 0) -> None:
        self.launches: list[LaunchSpec] = []
        self.kills: list[str] = []
        self.reconciled: list[list[str]] = []
        self.ended: list[RunEnd] = []
        self.failures_left = fail_launches
        self.on_exit: ExitCallback | None = None

    async def start(self, on_exit: ExitCallback, claims: ClaimChannel | None = None) -> None:
        self.on_exit = on_exit

    async def stop(self) -> None:
        self.on_exit = None

    async def launch(self, spec: LaunchSpec) -> None:
        if self.failures_left:
            self.failures_left -= 1
            raise OSError("no runner slot available")
        if all(launched.execution_id != spec.execution_id for launched in self.launches):
            self.launches.append(spec)

    async def kill(self, execution_id: str) -> None:
        self.kills.append(execution_id)

    async def reconcile(self, active_execution_ids: list[str]) -> None:
        self.reconciled.append(sorted(active_execution_ids))

    def runner_ref(self, execution_id: str) -> str | None:
        return f"recorded-{execution_id}" if execution_id in self.launched_ids() else None

    def details(self, execution_id: str) -> RunnerDetails | None:
        return None

    async def run_ended(self, end: RunEnd) -> None:
        self.ended.append(end)

    def launched_ids(self) -> list[str]:
        return [spec.execution_id for spec in self.launches]

    async def exit(self, execution_id: str, exit_code: int | None, reason: str) -> None:
        assert self.on_exit is not None
        await self.on_exit(RunnerExit(execution_id=execution_id, exit_code=exit_code, reason=reason))


@pytest.fixture
def settings(tmp_path: Path, nats_server: NatsServer) -> Settings:
    (tmp_path / "workspace").mkdir()
    return Settings(
        data_dir=tmp_path / "data",
        nats_url=nats_server.url,
        workspace_url=str(tmp_path / "workspace"),
        runner_exit_grace_seconds=0.3,
        cancel_grace_seconds=0.3,
    )


@pytest.fixture
def backend() -> RecordingBackend:
    return RecordingBackend()


@pytest.fixture
def tokens() -> TokenIssuer:
    return TokenIssuer(TOKEN_KEY)


EngineFactory = Callable[..., Awaitable[ExecutionEngine]]


@pytest.fixture
async def start_engine(
    settings: Settings, db: sqlalchemy.Engine, backend: RecordingBackend, tokens: TokenIssuer
) -> AsyncIterator[EngineFactory]:
    """Start engines (stopped at the end); keyword arguments override settings or the backend."""
    started: list[ExecutionEngine] = []

    async def start(backend_override: Any = None, **overrides: Any) -> ExecutionEngine:
        engine_settings = settings.model_copy(update=overrides)
        cipher = SecretCipher([Fernet.generate_key()])
        engine = ExecutionEngine(engine_settings, db, backend_override or backend, tokens, cipher)
        await engine.start()
        started.append(engine)
        return engine

    yield start
    for engine in started:
        await engine.stop()


@pytest.fixture
async def runner_nats(nats_server: NatsServer) -> AsyncIterator[NatsClient]:
    """A NATS connection of the kind a runner has, to publish events and listen on control subjects."""
    client = await nats.connect(nats_server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.1)
    yield client
    await client.close()


async def publish(js: JetStreamContext, event: Event, *, deduplicate: bool = True) -> None:
    """Publish as a runner does: retried until JetStream acknowledges (it may be restarting)."""
    headers = {"Nats-Msg-Id": message_id(event.execution_id, event.seq)} if deduplicate else None
    for _attempt in range(50):
        try:
            await js.publish(events_subject(event.execution_id), event.model_dump_json().encode(), headers=headers)
            return
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError):
            await asyncio.sleep(0.1)
    raise AssertionError(f"JetStream never acknowledged event {event.seq} of {event.execution_id}")


def log_event(execution_id: str, seq: int, *messages: str) -> LogEvent:
    records = [LogRecord(ts=utcnow(), level="INFO", logger="workflow", message=message) for message in messages]
    return LogEvent(execution_id=execution_id, seq=seq, records=records)


def full_run(execution_id: str, lines_per_event: int = 3, log_events: int = 2) -> list[Event]:
    """The events of a successful run: started, some logs, finished."""
    events: list[Event] = [StartedEvent(execution_id=execution_id, seq=1, pid=4242, workspace_revision="rev-1")]
    for index in range(log_events):
        messages = [f"line {index * lines_per_event + n + 1}" for n in range(lines_per_event)]
        events.append(log_event(execution_id, len(events) + 1, *messages))
    events.append(
        FinishedEvent(execution_id=execution_id, seq=len(events) + 1, status=ExecutionStatus.SUCCESS, duration_ms=12.5)
    )
    return events
