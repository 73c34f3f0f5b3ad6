"""Request and response bodies of executions: starting, reading, following them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from bifrost._internal.protocol import ExecutionStatus
from control_plane.backends.base import RunnerDetails
from control_plane.db.models import Execution, ExecutionKind, ExecutionLog, Trigger, as_utc


class ExecuteRequest(BaseModel):
    parameters: dict[str, Any] = Field(default_factory=dict, description="The workflow's parameters by name.")


class ExecutionAccepted(BaseModel):
    """The execution was created and runs (or waits to run) in the background."""

    execution_id: str
    status: ExecutionStatus


class ExecutionError(BaseModel):
    type: str | None
    message: str | None
    traceback: str | None = Field(description="Where the workflow raised, as the runner reported it.")
    runner_log_tail: str | None = Field(
        description="The last lines the runner printed, when it ended without reporting how the workflow ended."
    )


class RunnerOut(RunnerDetails):
    """Where the execution's runner was launched."""

    backend: str = Field(description="The backend that launched it: local, kubernetes, ...")
    runner_ref: str | None = Field(description="The backend's handle on the runner: a local pid, a Job name.")


class ExecutionOut(BaseModel):
    execution_id: str
    workflow_name: str = Field(description="The workflow, or for a `data_provider` execution the data provider.")
    kind: ExecutionKind
    trigger: Trigger | None = Field(description="How it was started; null for executions older than triggers.")
    form_id: str | None = Field(description="The form it was started from.")
    status: ExecutionStatus
    parameters: dict[str, Any]
    result: Any
    error: ExecutionError | None
    org_id: str | None
    user_id: str
    parent_execution_id: str | None
    workspace_revision: str | None
    log_count: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    duration_ms: float | None
    runner: RunnerOut | None = Field(description="Null until a backend launched the execution.")

    @classmethod
    def of(cls, execution: Execution, runner_details: RunnerDetails | None = None) -> ExecutionOut:
        """`runner_details`: what the backend adds about the runner (the detail view asks it; lists do not)."""
        has_error = execution.error_type is not None or execution.error_message is not None
        return cls(
            execution_id=execution.id,
            workflow_name=execution.workflow_name,
            kind=ExecutionKind(execution.kind),
            trigger=None if execution.trigger is None else Trigger(execution.trigger),
            form_id=execution.form_id,
            status=execution.status,
            parameters=execution.parameters,
            result=execution.result,
            error=ExecutionError(
                type=execution.error_type,
                message=execution.error_message,
                traceback=execution.traceback,
                runner_log_tail=execution.runner_log_tail,
            )
            if has_error
            else None,
            org_id=execution.org_id,
            user_id=execution.user_id,
            parent_execution_id=execution.parent_execution_id,
            workspace_revision=execution.workspace_revision,
            log_count=execution.log_count,
            created_at=as_utc(execution.created_at),
            started_at=as_utc(execution.started_at) if execution.started_at else None,
            finished_at=as_utc(execution.finished_at) if execution.finished_at else None,
            duration_ms=execution.duration_ms,
            runner=RunnerOut(
                backend=execution.backend,
                runner_ref=execution.runner_ref,
                **(runner_details or RunnerDetails()).model_dump(),
            )
            if execution.backend is not None
            else None,
        )


class ExecutionPage(BaseModel):
    executions: list[ExecutionOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next (older) page; null on the last.")


class LogLine(BaseModel):
    line: int
    ts: datetime
    level: str
    logger: str
    message: str

    @classmethod
    def of(cls, log: ExecutionLog) -> LogLine:
        return cls(line=log.line, ts=as_utc(log.ts), level=log.level, logger=log.logger, message=log.message)


class LogPage(BaseModel):
    logs: list[LogLine]
    next_after: int = Field(description="Pass as `after` to get the lines after this page.")
    has_more: bool = Field(description="Whether more lines were already stored when this page was read.")


class VariablesOut(BaseModel):
    execution_id: str
    variables: dict[str, Any] | None


class ResultOut(BaseModel):
    execution_id: str
    status: ExecutionStatus
    result: Any
