from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import MetaData, Table, inspect
from sqlmodel import Session, SQLModel, select

from bifrost._internal.protocol import ExecutionStatus
from control_plane.db.migrate import alembic_config, upgrade_database
from control_plane.db.models import Execution, Organization, User
from control_plane.db.session import make_engine
from tests.api.conftest import fresh_database


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return fresh_database(request.param, tmp_path, request)


def test_upgrade_creates_exactly_the_schema_of_the_models(empty_database: str) -> None:
    engine = make_engine(empty_database)
    upgrade_database(engine)
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), SQLModel.metadata)
    assert differences == [], "models.py changed without a migration: run `alembic revision --autogenerate`"
    engine.dispose()


def test_upgrade_twice_keeps_the_data(empty_database: str) -> None:
    engine = make_engine(empty_database)
    upgrade_database(engine)
    org = Organization(name="Acme")
    user = User(email="ops@acme.test", org_id=org.id)
    with Session(engine, expire_on_commit=False) as session:
        session.add_all([org, user])
        session.flush()
        session.add(Execution(org_id=org.id, user_id=user.id, workflow_name="w", status=ExecutionStatus.RUNNING))
        session.commit()
    upgrade_database(engine)
    with Session(engine) as session:
        execution = session.exec(select(Execution)).one()
        assert execution.status is ExecutionStatus.RUNNING
        assert execution.org_id == org.id
    engine.dispose()


def test_downgrade_to_base_and_back(empty_database: str) -> None:
    engine = make_engine(empty_database)
    upgrade_database(engine)
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    upgrade_database(engine)
    assert {"executions", "execution_logs", "api_keys", "workflows"} <= set(inspect(engine).get_table_names())
    engine.dispose()



def test_upgrade_from_forms_to_schedules_keeps_executions_as_first_attempts(empty_database: str) -> None:
    """A database at 0006 (forms and data provider calls) gains schedules, retry chains and dispatch slots: its
    executions read as first attempts that no schedule started and no dispatcher claimed."""
    engine = make_engine(empty_database)
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0006")
    assert not {"schedules", "schedule_fires"} & set(inspect(engine).get_table_names())
    org = Organization(name="Acme")
    user = User(email="ops@acme.test", org_id=org.id)
    with Session(engine, expire_on_commit=False) as session:
        session.add_all([org, user])
        session.commit()
    with engine.begin() as connection:
        executions_at_0006 = Table("executions", MetaData(), autoload_with=connection)
        connection.execute(
            executions_at_0006.insert().values(
                id="e1",
                org_id=org.id,
                user_id=user.id,
                workflow_name="w",
                trigger="api",
                status=ExecutionStatus.FAILED.name,
                parameters={"n": 1},
                last_event_seq=0,
                log_count=0,
                created_at=datetime.now(UTC),
            )
        )
    upgrade_database(engine)
    assert {"schedules", "schedule_fires"} <= set(inspect(engine).get_table_names())
    with Session(engine) as session:
        execution = session.exec(select(Execution)).one()
    assert (execution.status, execution.parameters, execution.trigger) == (ExecutionStatus.FAILED, {"n": 1}, "api")
    assert (execution.attempt, execution.retry_of, execution.schedule_id) == (1, None, None)
    assert (execution.launch_attempts, execution.slot_claimed_at, execution.start_after) == (0, None, None)
    engine.dispose()
