"""The tables as SQLAlchemy Core sees them, for the statements that are built once and read plain rows (launch,
event ingestion, API key checks: what runs on every run or request)."""

from __future__ import annotations

from sqlalchemy import Table
from sqlmodel import SQLModel

from control_plane.db.models import (
    ApiKey,
    DataProviderResult,
    Execution,
    ExecutionLog,
    Membership,
    Organization,
    Schedule,
    ScheduleFire,
    User,
    Workflow,
)


def _table(model: type[SQLModel]) -> Table:
    table: Table = model.__table__  # type: ignore[attr-defined]
    return table


API_KEYS = _table(ApiKey)
DATA_PROVIDER_RESULTS = _table(DataProviderResult)
EXECUTIONS = _table(Execution)
EXECUTION_LOGS = _table(ExecutionLog)
MEMBERSHIPS = _table(Membership)
ORGANIZATIONS = _table(Organization)
SCHEDULES = _table(Schedule)
SCHEDULE_FIRES = _table(ScheduleFire)
USERS = _table(User)
WORKFLOWS = _table(Workflow)
