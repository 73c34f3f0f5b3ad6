"""Two control-plane replicas (two engines, each with its own database pool, its own registry and its own
scheduler) against one real PostgreSQL and one NATS: the concurrency limits hold at every moment under a burst
from both, each retry is started once, and each fire time of a schedule runs once over many simulated minutes.

The runners are played by the test: each launch publishes the runner's `started` and `finished` events on the
real NATS, so the start and end times the assertions read are the runners' own."""

from __future__ import annotations

import asyncio
import random
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
from cryptography.fernet import Fernet
from nats.aio.client import Client as NatsClient
from sqlmodel import Session, select

from bifrost._internal.protocol import ExecutionStatus, FinishedEvent, StartedEvent
from bifrost.api.executions import Trigger
from bifrost.api.schedules import OverlapPolicy, ScheduleSource
from control_plane.backends.base import LaunchSpec
from control_plane.db.models import Execution, Schedule, ScheduleFire, User, utcnow
from control_plane.db.session import make_engine
from control_plane.engine import ExecutionEngine
from control_plane.registry import Registry
from control_plane.schedules.cron import next_fire_times, time_zone
from control_plane.schedules.scheduler import Scheduler
from control_plane.schedules.service import ScheduleService, ScheduleSettings
from control_plane.security.encryption import SecretCipher
from control_plane.security.principals import make_principal
from control_plane.security.tokens import TokenIssuer
from control_plane.settings import Settings
from control_plane.workspace_store import LocalFolderStore
from tests.engine.conftest import RecordingBackend, eventually, publish

postgresql_only = pytest.mark.parametrize("db", ["postgresql"], indirect=True)

WORKFLOWS = """
    from bifrost import workflow

    @workflow(max_concurrency=1)
    def serial(outcome: str = "success"):
        return {}

    @workflow(max_concurrency=2)
    def pair(outcome: str = "success"):
        return {}

    @workflow
    def free(outcome: str = "success"):
        return {}

    @workflow(retries={"count": 2, "backoff_seconds": 0.3, "backoff_factor": 2})
    def flaky(outcome: str = "fail"):
        return {}

    @workflow(schedule="*/5 * * * *")
    def sweep():
        return {}
"""


class PlayedRunners(RecordingBackend):
    """Every launch starts a played runner: it reports its start, runs a little, and reports its end as the
    execution's `outcome` parameter says. Every launch is kept, a second one of an execution too."""

    def __init__(self, runner_nats: NatsClient, all_launches: list[tuple[str, datetime]]) -> None:
        super().__init__()
        self._js = runner_nats.jetstream()
        self._all_launches = all_launches
        self._runs: set[asyncio.Task[None]] = set()

    async def launch(self, spec: LaunchSpec) -> None:
        self._all_launches.append((spec.execution_id, utcnow()))
        await super().launch(spec)
        run = asyncio.create_task(self._run(spec.execution_id, spec.payload.parameters.get("outcome", "success")))
        self._runs.add(run)
        run.add_done_callback(self._runs.discard)

    async def _run(self, execution_id: str, outcome: str) -> None:
        await publish(self._js, StartedEvent(execution_id=execution_id, seq=1))
        await asyncio.sleep(random.uniform(0, 0.01))
        status = ExecutionStatus.SUCCESS if outcome == "success" else ExecutionStatus.FAILED
        user_error = outcome == "user_error"
        finished = FinishedEvent(
            execution_id=execution_id,
            seq=2,
            status=status,
            error_type=None if status is ExecutionStatus.SUCCESS else "UserError" if user_error else "RuntimeError",
            user_error=user_error,
        )
        await publish(self._js, finished)

    async def stop(self) -> None:
        for run in list(self._runs):
            run.cancel()
        await super().stop()


@dataclass
class Replica:
    engine: ExecutionEngine
    db: sqlalchemy.Engine
    registry: Registry
    scheduler: Scheduler


@dataclass
class Cluster:
    replicas: list[Replica] = field(default_factory=list)
    launches: list[tuple[str, datetime]] = field(default_factory=list)
    """Every launch of every replica: execution and when."""

    def launch_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for execution_id, _at in self.launches:
            counts[execution_id] = counts.get(execution_id, 0) + 1
        return counts


ReplicaFactory = Callable[..., Awaitable[Replica]]


@pytest.fixture
def owner_id(db: sqlalchemy.Engine) -> str:
    with Session(db, expire_on_commit=False) as session:
        user = User(email="ops@acme.test", name="Ops", is_platform_admin=True)
        session.add(user)
        session.commit()
        return user.id


@pytest.fixture
async def cluster(
    settings: Settings, db: sqlalchemy.Engine, tokens: TokenIssuer, runner_nats: NatsClient, tmp_path: Path
) -> AsyncIterator[tuple[Cluster, ReplicaFactory]]:
    workspace = Path(settings.workspace_url)
    (workspace / "workflows.py").write_text(textwrap.dedent(WORKFLOWS))
    cluster = Cluster()
    cipher = SecretCipher([Fernet.generate_key()])

    async def start(clock: Callable[[], datetime] = utcnow, **overrides: Any) -> Replica:
        pool = make_engine(db.url.render_as_string(hide_password=False))
        registry = Registry(LocalFolderStore(workspace), pool)
        registry.rescan()
        backend = PlayedRunners(runner_nats, cluster.launches)
        engine = ExecutionEngine(settings.model_copy(update=overrides), pool, backend, tokens, cipher)
        await engine.start()
        scheduler = Scheduler(pool, registry, lambda execution_id: engine.submit(execution_id, sync=False), clock)
        replica = Replica(engine, pool, registry, scheduler)
        cluster.replicas.append(replica)
        return replica

    yield cluster, start
    for replica in cluster.replicas:
        await replica.engine.stop()
        replica.db.dispose()


def new_row(owner_id: str, workflow: str, **parameters: Any) -> dict[str, Any]:
    execution = Execution(user_id=owner_id, workflow_name=workflow, parameters=parameters, trigger=Trigger.API)
    return {column: value for column, value in execution.model_dump().items() if value is not None}


def read_all(db: sqlalchemy.Engine) -> list[Execution]:
    with Session(db) as session:
        return list(session.exec(select(Execution).order_by(Execution.created_at, Execution.id)))  # type: ignore[arg-type]


async def all_finished(db: sqlalchemy.Engine, count: int, within: float = 120) -> list[Execution]:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        executions = await asyncio.to_thread(read_all, db)
        if len(executions) >= count and all(execution.status.is_terminal for execution in executions):
            return executions
        if asyncio.get_running_loop().time() > deadline:
            waiting = [execution.status for execution in executions if not execution.status.is_terminal]
            raise AssertionError(f"{len(executions)} executions, {len(waiting)} not finished: {waiting[:5]}")
        await asyncio.sleep(0.1)


def most_at_once(executions: list[Execution]) -> int:
    """The most executions that ran at one moment, by their runners' start and end times."""
    edges = sorted(
        [(execution.started_at, 1) for execution in executions]
        + [(execution.finished_at, -1) for execution in executions],
        key=lambda edge: (edge[0], edge[1]),  # an end before a start at the same instant
    )
    running = most = 0
    for _moment, change in edges:
        running += change
        most = max(most, running)
    return most


@postgresql_only
async def test_a_burst_from_two_replicas_never_exceeds_the_limits(
    cluster: tuple[Cluster, ReplicaFactory], owner_id: str, db: sqlalchemy.Engine
) -> None:
    state, start = cluster
    first, second = await start(max_concurrency=4), await start(max_concurrency=4)

    async def burst(replica: Replica, workflow: str, count: int) -> None:
        for _ in range(count):
            row = new_row(owner_id, workflow)
            await replica.engine.submit(row["id"], sync=False, new_row=row)

    await asyncio.gather(burst(first, "serial", 100), burst(second, "serial", 100))
    serial = await all_finished(db, 200)

    assert state.launch_counts() == {execution.id: 1 for execution in serial}
    assert all(execution.status is ExecutionStatus.SUCCESS for execution in serial)
    assert most_at_once(serial) == 1
    # In order: each started after the one created before it had ended.
    by_start = sorted(serial, key=lambda execution: execution.started_at)  # type: ignore[arg-type, return-value]
    assert [execution.id for execution in by_start] == [execution.id for execution in serial]

    # Mixed: the global limit (4) over three workflows, each within its own.
    await asyncio.gather(
        burst(first, "pair", 30), burst(second, "pair", 30), burst(first, "free", 30), burst(second, "serial", 30)
    )
    everything = await all_finished(db, 320)
    first_burst = {execution.id for execution in serial}
    mixed = [execution for execution in everything if execution.id not in first_burst]
    assert state.launch_counts() == {execution.id: 1 for execution in everything}
    assert most_at_once(mixed) <= 4
    assert most_at_once([execution for execution in mixed if execution.workflow_name == "pair"]) <= 2
    assert most_at_once([execution for execution in mixed if execution.workflow_name == "serial"]) == 1


@postgresql_only
async def test_each_retry_starts_once_after_its_backoff(
    cluster: tuple[Cluster, ReplicaFactory], owner_id: str, db: sqlalchemy.Engine
) -> None:
    state, start = cluster
    first, second = await start(), await start()
    outcomes = ["fail"] * 6 + ["user_error", "success"]
    for index, outcome in enumerate(outcomes):
        row = new_row(owner_id, "flaky", outcome=outcome)
        await (first if index % 2 else second).engine.submit(row["id"], sync=False, new_row=row)

    executions = await all_finished(db, 6 * 3 + 2)
    await asyncio.sleep(1.5)  # longer than any backoff: no further attempt comes
    executions = await asyncio.to_thread(read_all, db)
    assert len(executions) == 6 * 3 + 2
    assert state.launch_counts() == {execution.id: 1 for execution in executions}

    launched_at = dict(state.launches)
    firsts = [execution for execution in executions if execution.retry_of is None]
    assert sorted(execution.parameters["outcome"] for execution in firsts) == sorted(outcomes)
    for first_attempt in firsts:
        chain = sorted(
            (execution for execution in executions if first_attempt.id in (execution.id, execution.retry_of)),
            key=lambda execution: execution.attempt,
        )
        if first_attempt.parameters["outcome"] != "fail":
            assert chain == [first_attempt]  # a UserError, or a success, is not retried
            continue
        assert [execution.attempt for execution in chain] == [1, 2, 3]
        assert [execution.trigger for execution in chain] == ["api", "retry", "retry"]
        for previous, retry, delay in zip(chain, chain[1:], (0.3, 0.6), strict=False):
            assert retry.parameters == previous.parameters
            assert (retry.user_id, retry.org_id, retry.workspace_revision) == (
                previous.user_id,
                previous.org_id,
                previous.workspace_revision,
            )
            assert previous.finished_at is not None and retry.start_after is not None
            assert retry.start_after - previous.finished_at == timedelta(seconds=delay)
            assert launched_at[retry.id] >= retry.start_after.replace(tzinfo=UTC)


@postgresql_only
async def test_a_retry_waits_in_the_database_through_a_restart(
    cluster: tuple[Cluster, ReplicaFactory], owner_id: str, db: sqlalchemy.Engine
) -> None:
    state, start = cluster
    only = await start()
    row = new_row(owner_id, "flaky", outcome="fail")
    await only.engine.submit(row["id"], sync=False, new_row=row)

    await eventually(lambda: any(execution.attempt == 2 for execution in read_all(db)), "the retry is recorded")
    await only.engine.stop()  # before its backoff ends: nothing in this process remembers it
    state.replicas.remove(only)
    only.db.dispose()

    await start()
    executions = await all_finished(db, 3)
    assert [execution.attempt for execution in executions] == [1, 2, 3]
    assert state.launch_counts() == {execution.id: 1 for execution in executions}


SCHEDULED = (("* * * * *", "UTC"), ("*/7 * * * *", "Europe/Berlin"), ("30 2 * * *", "Europe/Berlin"))


class SharedClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@postgresql_only
async def test_every_fire_time_runs_once_across_two_schedulers(
    cluster: tuple[Cluster, ReplicaFactory], owner_id: str, db: sqlalchemy.Engine
) -> None:
    state, start = cluster
    began = datetime(2026, 3, 29, 0, 0, 5, tzinfo=UTC)  # Europe/Berlin moves its clock this night
    clock = SharedClock(began)
    first, second = await start(clock), await start(clock)
    with Session(db, expire_on_commit=False) as session:
        admin = session.get(User, owner_id)
        assert admin is not None
    principal = make_principal(
        user_id=owner_id, home_org_id=None, email=admin.email, name=admin.name, is_platform_admin=True, roles={}
    )
    service = ScheduleService(first.db, first.registry, clock=clock)
    made = {
        cron: service.create(
            principal,
            None,
            ScheduleSettings("free", {}, cron, timezone=zone, overlap_policy=OverlapPolicy.ALLOW),
            ip="127.0.0.1",
        ).schedule.id
        for cron, zone in SCHEDULED
    }

    simulated = timedelta(hours=3)
    while clock.now < began + simulated:
        await asyncio.gather(first.scheduler.tick(), second.scheduler.tick())
        clock.now += timedelta(seconds=20)

    with Session(db) as session:
        fires = list(session.exec(select(ScheduleFire)))
        [sweep] = session.exec(select(Schedule.id).where(Schedule.source == ScheduleSource.DECORATOR))
    timings = {**{made[cron]: (cron, zone) for cron, zone in SCHEDULED}, sweep: ("*/5 * * * *", "UTC")}
    last_tick = clock.now - timedelta(seconds=20)
    for schedule_id, (cron, zone) in timings.items():
        expected = [moment for moment in next_fire_times(cron, time_zone(zone), began, 1000) if moment <= last_tick]
        fired = sorted(fire.fire_time.replace(tzinfo=UTC) for fire in fires if fire.schedule_id == schedule_id)
        assert fired == expected, cron
    # 02:30 does not exist in Berlin that night: it ran once, at 03:00 CEST.
    assert [fire.fire_time.replace(tzinfo=UTC) for fire in fires if fire.schedule_id == made["30 2 * * *"]] == [
        datetime(2026, 3, 29, 1, 0, tzinfo=UTC)
    ]

    started = [fire.execution_id for fire in fires if fire.outcome == "started"]
    executions = await all_finished(db, len(started))
    assert sorted(execution.id for execution in executions) == sorted(started)
    assert state.launch_counts() == {execution_id: 1 for execution_id in started}
