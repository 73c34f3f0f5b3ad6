"""Executions as callers see them: starting one (validated, recorded, handed to the engine), reading them
back within what the caller may see, following them live, cancelling them; and what a running execution reads
of itself and of the sub-workflows it started."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from bifrost._internal.protocol import ExecutionStatus, RunPayload
from bifrost._internal.schema import validate_parameters
from bifrost.api.executions import ExecutionKind, Trigger
from bifrost.metadata import DataProviderInfo
from control_plane.backends.base import RunnerDetails
from control_plane.db.models import Execution, as_utc, utcnow
from control_plane.engine import ExecutionEngine, LiveStreamLaggedError
from control_plane.errors import ConflictError, InvalidRequestError, NotAuthenticatedError, NotFoundError
from control_plane.executions.changes import LiveEvent, LogBatch, status_data
from control_plane.executions.launch import PayloadLimits, launch_target
from control_plane.executions.repository import ExecutionFilters, ExecutionRepository
from control_plane.executions.sealed_parameters import seal
from control_plane.executions.slots import Limits, Slots
from control_plane.metrics import EXECUTIONS_CREATED
from control_plane.registry import Registry
from control_plane.security.encryption import SecretCipher
from control_plane.security.principals import Principal
from control_plane.settings import Settings

LOG_BATCH_LINES = 1000
"""The most stored log lines a stream's replay sends as one `logs` event."""


class WorkflowNotFoundError(NotFoundError):
    def __init__(self, name: str) -> None:
        super().__init__(f"no workflow named {name!r} in the workspace")
        self.name = name


class InvalidCursorError(InvalidRequestError):
    def __init__(self) -> None:
        super().__init__("invalid cursor: pass back the next_cursor of a previous page unchanged")


@dataclass(frozen=True)
class Starter:
    """On whose behalf an execution runs."""

    user_id: str
    org_id: str | None


class ExecutionService:
    """The one path every caller (API, endpoint, sub-workflow) starts and reads executions through."""

    def __init__(
        self, db_engine: Engine, registry: Registry, engine: ExecutionEngine, cipher: SecretCipher, settings: Settings
    ) -> None:
        self._repository = ExecutionRepository(db_engine)
        self._registry = registry
        self._engine = engine
        self._cipher = cipher
        self._limits = PayloadLimits(settings.max_result_bytes, settings.max_json_depth)
        self._slots = Slots(db_engine)
        self._concurrency = Limits(total=settings.max_concurrency, per_workflow=settings.max_concurrency_per_workflow)

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
        trigger: Trigger = Trigger.API,
        form_id: str | None = None,
    ) -> tuple[Execution, bool]:
        """Validate, record and submit one execution. `sync=None` follows the workflow's execution mode.
        `secrets`: values a parent run knows as secret; where they occur in the parameters, they are stored
        masked, and the real parameters encrypted for the runner only. `trigger` and `form_id` record how it was
        started.

        Returns the execution and whether it was submitted as sync; with `wait_seconds`, a sync execution is
        returned as it finished if it finishes within that time. Raises `WorkflowNotFoundError`, and
        `bifrost._internal.schema.ParameterValidationError` with per-field errors.
        """
        workflow = self._registry.get(workflow_name)
        if workflow is None:
            raise WorkflowNotFoundError(workflow_name)
        stored, sealed = seal(self._cipher, validate_parameters(workflow.parameters_schema, parameters), secrets)
        execution = Execution(
            org_id=starter.org_id,
            user_id=starter.user_id,
            workflow_name=workflow.name,
            trigger=trigger,
            form_id=form_id,
            parameters=stored,
            sealed_parameters=sealed,
            parent_execution_id=parent_execution_id,
            workspace_revision=self._registry.snapshot.revision,
        )
        run_sync = workflow.execution_mode == "sync" if sync is None else sync
        return await self._submit(execution, run_sync, wait_seconds), run_sync

    async def call_data_provider(
        self,
        provider: DataProviderInfo,
        inputs: dict[str, Any],
        *,
        starter: Starter,
        workspace_revision: str | None,
        wait_seconds: float,
        late_reason: str,
        trigger: Trigger = Trigger.API,
        form_id: str | None = None,
    ) -> Execution:
        """Run a data provider with validated `inputs` at `workspace_revision`, as a sync execution of kind
        `data_provider`: the execution as it finished, or, cancelled with `late_reason`, as it was when
        `wait_seconds` ran out."""
        execution = Execution(
            org_id=starter.org_id,
            user_id=starter.user_id,
            workflow_name=provider.name,
            kind=ExecutionKind.DATA_PROVIDER,
            trigger=trigger,
            form_id=form_id,
            parameters=inputs,
            workspace_revision=workspace_revision,
        )
        execution = await self._submit(execution, True, wait_seconds)
        if not execution.status.is_terminal:
            await self._engine.cancel(execution.id, late_reason)
        return execution

    async def _submit(self, execution: Execution, run_sync: bool, wait_seconds: float | None) -> Execution:
        if run_sync and (ready_id := self._engine.ready_execution_id()) is not None:
            execution.id = ready_id  # its runner waits connected to NATS already
        # Watched from before its launch, so its end cannot slip by unseen.
        with self._engine.watch_terminal(execution.id) as finished:
            await self._engine.submit(execution.id, sync=run_sync, new_row=_new_row(execution))
            EXECUTIONS_CREATED.labels(mode="sync" if run_sync else "async").inc()
            if not run_sync or wait_seconds is None:
                return execution
            try:
                final_row = await asyncio.wait_for(finished, wait_seconds)
            except TimeoutError:
                return execution
        if final_row is not None:
            return Execution.model_validate(final_row)
        return await run_in_threadpool(self._repository.get, execution.id) or execution

    def visible(self, principal: Principal, execution_id: str) -> Execution:
        """The execution, if the principal may see it; `NotFoundError` otherwise."""
        execution = self._repository.visible(principal, execution_id)
        if execution is None:
            raise NotFoundError(f"no execution {execution_id!r}")
        return execution

    def with_runner(self, principal: Principal, execution_id: str) -> tuple[Execution, RunnerDetails | None]:
        """The execution and what its backend tells of its runner (None when another backend launched it)."""
        execution = self.visible(principal, execution_id)
        backend = self._engine.backend
        return execution, backend.details(execution.id) if execution.backend == backend.name else None

    def waiting_for(self, execution: Execution) -> str | None:
        """What a Pending execution not launched yet waits for (see `Slots.holding_back`); None for the others."""
        if execution.status != ExecutionStatus.PENDING or execution.backend is not None:
            return None
        return self._slots.holding_back(execution.id, self._concurrency, utcnow())

    def attempts(self, execution: Execution) -> list[Execution]:
        """The attempts of the retry chain the execution belongs to, first to last; empty when it has none."""
        chain = self._repository.attempts(execution.retry_of or execution.id)
        return chain if len(chain) > 1 else []

    def page(
        self,
        principal: Principal,
        *,
        workflow: str | None = None,
        kind: ExecutionKind = ExecutionKind.WORKFLOW,
        form_id: str | None = None,
        status: ExecutionStatus | None = None,
        org_id: str | None = None,
        user_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        cursor: str | None = None,
        limit: int,
    ) -> tuple[list[Execution], str | None]:
        """One page of the executions of `kind` the principal may see, newest first, and the cursor of the next
        page (None on the last one). `InvalidCursorError` for a cursor no page gave."""
        filters = ExecutionFilters(
            workflow=workflow,
            kind=kind,
            form_id=form_id,
            status=status,
            org_id=org_id,
            user_id=user_id,
            since=since,
            until=until,
        )
        before = None if cursor is None else _decode_cursor(cursor)
        rows = self._repository.newest(principal, filters, before=before, limit=limit + 1)
        if len(rows) <= limit:
            return rows, None
        last = rows[limit - 1]
        return rows[:limit], _encode_cursor(as_utc(last.created_at), last.id)

    def logs(self, principal: Principal, execution_id: str, *, after_line: int, limit: int) -> tuple[LogBatch, bool]:
        """Up to `limit` log lines after `after_line`, and whether more were already stored."""
        self.visible(principal, execution_id)
        return self._repository.logs(execution_id, after_line=after_line, limit=limit)

    async def cancel(self, principal: Principal, execution_id: str) -> Execution:
        """Ask a pending or running execution to stop; the execution as it was asked. `ConflictError` when it has
        already finished."""
        execution = await run_in_threadpool(self.visible, principal, execution_id)
        if execution.status.is_terminal:
            raise _AlreadyFinishedError(execution)
        await self._engine.cancel(execution_id)
        return execution

    async def follow(self, execution_id: str, *, after_line: int = 0) -> AsyncIterator[LiveEvent | LogBatch]:
        """Everything so far (the stored log after line `after_line` in batches of up to `LOG_BATCH_LINES` lines,
        then variables, result, status), then the changes as they commit, until the execution finishes or the
        follower falls too far behind (then the follower starts over, after the last line it got)."""
        # Subscribed before the backlog is read: whatever commits in between arrives live, and the backlog's
        # high-water marks drop what both contain.
        async with self._engine.live(execution_id) as live:
            read = await run_in_threadpool(
                self._repository.with_log, execution_id, after_line=after_line, batch_size=LOG_BATCH_LINES
            )
            if read is None:
                raise NotFoundError(f"no execution {execution_id!r}")
            execution, batches = read
            for batch in batches:
                yield batch
            seq = execution.last_event_seq
            if execution.variables is not None:
                yield LiveEvent(kind="variables", id=seq, data={"variables": execution.variables})
            if execution.status.is_terminal:
                yield LiveEvent(kind="result", id=seq, data={"result": execution.result})
            yield LiveEvent(kind="status", id=seq, data=_status_of(execution))
            if execution.status.is_terminal:
                return
            last_line = batches[-1].last_line if batches else after_line
            live.skip_lines_through(last_line)
            try:
                async for event in live:
                    if event.id > (last_line if event.kind == "log" else seq):
                        yield event
            except LiveStreamLaggedError:
                return

    def status(self, execution_id: str) -> ExecutionStatus | None:
        """The execution's status; None when there is no such execution."""
        return self._repository.status(execution_id)

    def runner_payload(self, execution_id: str) -> RunPayload:
        """What the runner of the execution runs. `NotAuthenticatedError` when the execution is gone,
        `NotFoundError` saying why when it cannot run."""
        row = self._repository.launch_row(execution_id)
        if row is None:
            raise NotAuthenticatedError("the token's execution no longer exists")
        target = launch_target(row, self._limits, self._cipher)
        if target.payload is None:
            raise NotFoundError(target.problem.message if target.problem else "the execution cannot run")
        return target.payload

    async def child(self, parent_execution_id: str, execution_id: str, *, wait: float) -> Execution:
        """A sub-workflow the parent started; with `wait` seconds, as soon as it finishes within them.
        `NotFoundError` for an execution that is not the parent's sub-workflow."""
        child = await run_in_threadpool(self._child, parent_execution_id, execution_id)
        if not child.status.is_terminal and wait > 0:
            await self._engine.wait_terminal(execution_id, wait)
            child = await run_in_threadpool(self._child, parent_execution_id, execution_id)
        return child

    def _child(self, parent_execution_id: str, execution_id: str) -> Execution:
        child = self._repository.get(execution_id)
        if child is None or child.parent_execution_id != parent_execution_id:
            raise NotFoundError(f"no sub-workflow execution {execution_id!r}")
        return child


class _AlreadyFinishedError(ConflictError):
    def __init__(self, execution: Execution) -> None:
        super().__init__(f"execution {execution.id!r} already finished ({execution.status.value})")


def _new_row(execution: Execution) -> dict[str, Any]:
    """The execution's values as an `executions` row; unset ones are left to the database (NULL, not JSON null)."""
    return {column: value for column, value in execution.model_dump().items() if value is not None}


def _status_of(execution: Execution) -> dict[str, Any]:
    return status_data(
        execution.status,
        error_type=execution.error_type,
        error_message=execution.error_message,
        duration_ms=execution.duration_ms,
    )


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
