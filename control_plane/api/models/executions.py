"""Request and response bodies of executions: starting, reading, following them (defined in `bifrost.api`,
which the client reads them with); here, how each is made from what the services return."""

from __future__ import annotations

from collections.abc import Sequence

from bifrost.api import executions as api
from bifrost.api.executions import (
    AttemptOut,
    ExecuteRequest,
    ExecutionAccepted,
    ExecutionError,
    ExecutionKind,
    LogLine,
    LogPage,
    ResultOut,
    RunnerDetails,
    RunnerOut,
    Trigger,
    VariablesOut,
)
from control_plane.db.models import Execution, as_utc

__all__ = [
    "ExecuteRequest",
    "ExecutionAccepted",
    "ExecutionOut",
    "ExecutionPage",
    "LogLine",
    "LogPage",
    "ResultOut",
    "VariablesOut",
]


def _attempt(execution: Execution) -> AttemptOut:
    return AttemptOut(
        execution_id=execution.id,
        attempt=execution.attempt,
        status=execution.status,
        start_after=as_utc(execution.start_after) if execution.start_after else None,
        created_at=as_utc(execution.created_at),
        finished_at=as_utc(execution.finished_at) if execution.finished_at else None,
    )


class ExecutionOut(api.ExecutionOut):
    @classmethod
    def of(
        cls,
        execution: Execution,
        runner_details: RunnerDetails | None = None,
        attempts: Sequence[Execution] | None = None,
        waiting_for: str | None = None,
    ) -> ExecutionOut:
        """`runner_details`: what the backend adds about the runner; `attempts`: the retry chain it belongs to;
        `waiting_for`: what it waits for, Pending (the detail view asks for these; lists do not)."""
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
            schedule_id=execution.schedule_id,
            retry_of=execution.retry_of,
            attempt=execution.attempt,
            start_after=as_utc(execution.start_after) if execution.start_after else None,
            waiting_for=waiting_for,
            attempts=[_attempt(attempt) for attempt in attempts] if attempts else None,
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


class ExecutionPage(api.ExecutionPage):
    executions: Sequence[ExecutionOut]
