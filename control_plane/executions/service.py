"""Executions as the API sees them: starting one (validated, written in one transaction, handed to the engine)
and reading them back, always within what the caller may see."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, or_
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import SelectOfScalar
from starlette.concurrency import run_in_threadpool

from bifrost.protocol import ExecutionStatus
from bifrost.schema import validate_parameters
from control_plane.db.models import Execution, ExecutionLog
from control_plane.db.session import session_scope
from control_plane.engine import Engine as ExecutionEngine
from control_plane.executions.sealed_parameters import seal
from control_plane.metrics import EXECUTIONS_CREATED
from control_plane.registry import Registry
from control_plane.security.encryption import SecretCipher
from control_plane.security.principals import Principal


class WorkflowNotFoundError(LookupError):
    def __init__(self, name: str) -> None:
        super().__init__(f"no workflow named {name!r} in the workspace")
        self.name = name


class InvalidCursorError(ValueError):
    def __init__(self) -> None:
        super().__init__("invalid cursor: pass back the next_cursor of a previous page unchanged")


@dataclass(frozen=True)
class Starter:
    """On whose behalf an execution runs."""

    user_id: str
    org_id: str | None


class ExecutionService:
    """Starts executions; the one path every caller (API, endpoint, sub-workflow) goes through."""

    def __init__(self, db_engine: Engine, registry: Registry, engine: ExecutionEngine, cipher: SecretCipher) -> None:
        self._db_engine = db_engine
        self._registry = registry
        self._engine = engine
        self._cipher = cipher

    async def start(
        self,
        workflow_name: str,
        parameters: dict[str, Any],
        *,
        starter: Starter,
        sync: bool | None = None,
        parent_execution_id: str | None = None,
        wait_seconds: float | None = None,
        secrets: Sequence[str] = (),
    ) -> tuple[Execution, bool]:
        """Validate, record and submit one execution. `sync=None` follows the workflow's execution mode.
        `secrets`: values a parent run knows as secret; where they occur in the parameters, they are stored
        masked, and the real parameters encrypted for the runner only.

        Returns the execution and whether it was submitted as sync; with `wait_seconds`, a sync execution is
        returned as it finished if it finishes within that time. Raises `WorkflowNotFoundError`, and
        `bifrost.schema.ParameterValidationError` with per-field errors.
        """
        workflow = self._registry.get(workflow_name)
        if workflow is None:
            raise WorkflowNotFoundError(workflow_name)
        stored, sealed = seal(self._cipher, validate_parameters(workflow.parameters_schema, parameters), secrets)
        execution = Execution(
            org_id=starter.org_id,
            user_id=starter.user_id,
            workflow_name=workflow.name,
            parameters=stored,
            sealed_parameters=sealed,
            parent_execution_id=parent_execution_id,
            workspace_revision=self._registry.snapshot.revision,
        )
        run_sync = workflow.execution_mode == "sync" if sync is None else sync
        # Watched from before its launch, so its end cannot slip by unseen.
        with self._engine.watch_terminal(execution.id) as finished:
            await self._engine.submit(execution.id, sync=run_sync, new_row=_new_row(execution))
            EXECUTIONS_CREATED.labels(mode="sync" if run_sync else "async").inc()
            if not run_sync or wait_seconds is None:
                return execution, run_sync
            try:
                final_row = await asyncio.wait_for(finished, wait_seconds)
            except TimeoutError:
                return execution, run_sync
        if final_row is not None:
            return Execution.model_validate(final_row), run_sync
        return await run_in_threadpool(self._load, execution.id) or execution, run_sync

    def _load(self, execution_id: str) -> Execution | None:
        with session_scope(self._db_engine) as session:
            return session.get(Execution, execution_id)


def _new_row(execution: Execution) -> dict[str, Any]:
    """The execution's values as an `executions` row; unset ones are left to the database (NULL, not JSON null)."""
    return {column: value for column, value in execution.model_dump().items() if value is not None}


@dataclass(frozen=True)
class ExecutionFilters:
    workflow: str | None = None
    status: ExecutionStatus | None = None
    org_id: str | None = None
    user_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def _visible_to(query: SelectOfScalar[Execution], principal: Principal) -> SelectOfScalar[Execution]:
    if principal.is_platform_admin:
        return query
    if principal.org_id is None:
        # Global executions are the platform's; a user without an organization sees only their own.
        return query.where(col(Execution.org_id).is_(None), Execution.user_id == principal.user_id)
    return query.where(Execution.org_id == principal.org_id)


def get_execution(session: Session, principal: Principal, execution_id: str) -> Execution | None:
    return session.exec(_visible_to(select(Execution).where(Execution.id == execution_id), principal)).first()


def list_executions(
    session: Session, principal: Principal, filters: ExecutionFilters, *, cursor: str | None, limit: int
) -> tuple[list[Execution], str | None]:
    """One page, newest first, and the cursor of the next page (None on the last one)."""
    query = _visible_to(select(Execution), principal)
    if filters.workflow is not None:
        query = query.where(Execution.workflow_name == filters.workflow)
    if filters.status is not None:
        query = query.where(Execution.status == filters.status)
    if filters.org_id is not None:
        query = query.where(Execution.org_id == filters.org_id)
    if filters.user_id is not None:
        query = query.where(Execution.user_id == filters.user_id)
    if filters.since is not None:
        query = query.where(col(Execution.created_at) >= filters.since)
    if filters.until is not None:
        query = query.where(col(Execution.created_at) < filters.until)
    if cursor is not None:
        created_at, execution_id = _decode_cursor(cursor)
        query = query.where(
            or_(
                col(Execution.created_at) < created_at,
                (col(Execution.created_at) == created_at) & (col(Execution.id) < execution_id),
            )
        )
    query = query.order_by(col(Execution.created_at).desc(), col(Execution.id).desc()).limit(limit + 1)
    rows = list(session.exec(query).all())
    if len(rows) <= limit:
        return rows, None
    last = rows[limit - 1]
    return rows[:limit], _encode_cursor(as_utc(last.created_at), last.id)


def list_logs(session: Session, execution_id: str, *, after_line: int, limit: int | None = None) -> list[ExecutionLog]:
    query = (
        select(ExecutionLog)
        .where(ExecutionLog.execution_id == execution_id, col(ExecutionLog.line) > after_line)
        .order_by(col(ExecutionLog.line))
        .limit(limit)
    )
    return list(session.exec(query).all())


def as_utc(moment: datetime) -> datetime:
    """SQLite hands timestamps back without a zone; Bifrost writes every timestamp in UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _encode_cursor(created_at: datetime, execution_id: str) -> str:
    raw = json.dumps([created_at.isoformat(), execution_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created_at, execution_id = json.loads(raw)
        return as_utc(datetime.fromisoformat(created_at)), str(execution_id)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise InvalidCursorError from exc
