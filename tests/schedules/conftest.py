from __future__ import annotations

import textwrap
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy
from sqlmodel import Session, select

from control_plane.db.models import Execution, Membership, Organization, OrgRole, Schedule, ScheduleFire, User
from control_plane.registry import Registry
from control_plane.schedules.scheduler import Scheduler
from control_plane.schedules.service import ScheduleService
from control_plane.security.principals import Principal, make_principal
from control_plane.workspace_store import LocalFolderStore
from tests.engine.conftest import db

__all__ = ["db"]


class Clock:
    """A clock the test moves: the scheduler reads the time from it."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


@dataclass
class Workspace:
    root: Path
    registry: Registry

    def write(self, relative: str, source: str) -> None:
        """Write a workflow file and let the registry see it, as its next poll would."""
        (self.root / relative).write_text(textwrap.dedent(source))
        self.registry.rescan()

    def remove(self, relative: str) -> None:
        (self.root / relative).unlink()
        self.registry.rescan()


@dataclass
class Submitted:
    """What the scheduler handed to the engine."""

    ids: list[str] = field(default_factory=list)

    async def __call__(self, execution_id: str) -> None:
        self.ids.append(execution_id)


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2026, 1, 5, 8, 59, 30, tzinfo=UTC))


@pytest.fixture
def workspace(tmp_path: Path, db: sqlalchemy.Engine) -> Workspace:
    root = tmp_path / "workspace"
    root.mkdir()
    return Workspace(root, Registry(LocalFolderStore(root), db))


@pytest.fixture
def submitted() -> Submitted:
    return Submitted()


@pytest.fixture
def scheduler(db: sqlalchemy.Engine, workspace: Workspace, submitted: Submitted, clock: Clock) -> Scheduler:
    return Scheduler(db, workspace.registry, submitted, clock=clock)


@pytest.fixture
def schedules(db: sqlalchemy.Engine, workspace: Workspace, clock: Clock) -> ScheduleService:
    return ScheduleService(db, workspace.registry, clock=clock)


@pytest.fixture
def org_admin(db: sqlalchemy.Engine) -> Principal:
    with Session(db, expire_on_commit=False) as session:
        org = Organization(name="Acme")
        admin = User(email="admin@acme.test", name="Admin", org_id=org.id)
        session.add(org)
        session.flush()
        session.add(admin)
        session.flush()
        session.add(Membership(user_id=admin.id, org_id=org.id, role=OrgRole.ORG_ADMIN.value))
        session.commit()
    return make_principal(
        user_id=admin.id,
        home_org_id=org.id,
        email=admin.email,
        name=admin.name,
        is_platform_admin=False,
        roles={org.id: OrgRole.ORG_ADMIN},
    )


def executions_of(db: sqlalchemy.Engine, schedule_id: str) -> list[Execution]:
    with Session(db) as session:
        query = select(Execution).where(Execution.schedule_id == schedule_id).order_by(Execution.created_at)  # type: ignore[arg-type]
        return list(session.exec(query))


def fires_of(db: sqlalchemy.Engine, schedule_id: str) -> list[ScheduleFire]:
    with Session(db) as session:
        query = select(ScheduleFire).where(ScheduleFire.schedule_id == schedule_id).order_by(ScheduleFire.fire_time)  # type: ignore[arg-type]
        return list(session.exec(query))


def read_schedule(db: sqlalchemy.Engine, schedule_id: str) -> Schedule:
    with Session(db) as session:
        schedule = session.get(Schedule, schedule_id)
        assert schedule is not None
        return schedule


def all_schedules(db: sqlalchemy.Engine) -> list[Schedule]:
    with Session(db) as session:
        return list(session.exec(select(Schedule)))


@pytest.fixture
def platform_admin(db: sqlalchemy.Engine) -> Principal:
    with Session(db, expire_on_commit=False) as session:
        admin = User(email="root@bifrost.test", name="Root", is_platform_admin=True)
        session.add(admin)
        session.commit()
    return make_principal(
        user_id=admin.id, home_org_id=None, email=admin.email, name=admin.name, is_platform_admin=True, roles={}
    )
