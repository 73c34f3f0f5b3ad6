"""Executions: starting them, reading them, following their logs."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from bifrost._internal.protocol import ExecutionStatus

__all__ = [
    "AttemptOut",
    "ExecuteRequest",
    "ExecutionAccepted",
    "ExecutionError",
    "ExecutionKind",
    "ExecutionOut",
    "ExecutionPage",
    "ExecutionStatus",
    "LogLine",
    "LogPage",
    "ResultOut",
    "RunnerDetails",
    "RunnerOut",
    "StatusChange",
    "Trigger",
    "VariablesOut",
]


class ExecutionKind(StrEnum):
    """What an execution runs: a workflow, or a data provider called for a form field's options."""

    WORKFLOW = "workflow"
    DATA_PROVIDER = "data_provider"


class Trigger(StrEnum):
    """How an execution was started."""

    API = "api"
    ENDPOINT = "endpoint"
    WORKFLOW = "workflow"
    """A sub-workflow, started by a running workflow."""
    FORM = "form"
    SCHEDULE = "schedule"
    """A fire of a schedule (`schedule_id` names it)."""
    RETRY = "retry"
    """A retry of a failed or timed-out execution (`retry_of` names the first attempt)."""


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


class RunnerDetails(BaseModel):
    """Where an execution's runner is, beyond the backend's reference to it: for the execution detail view."""

    namespace: str | None = Field(None, description="The Kubernetes namespace of the runner.")
    job_name: str | None = Field(None, description="The runner's Kubernetes Job.")
    pod_name: str | None = Field(None, description="The Job's pod, while this control plane knows it.")
    commands: list[str] = Field(default_factory=list, description="Shell commands that inspect the runner.")


class RunnerOut(RunnerDetails):
    """Where the execution's runner was launched."""

    backend: str = Field(description="The backend that launched it: local, kubernetes, ...")
    runner_ref: str | None = Field(description="The backend's handle on the runner: a local pid, a Job name.")


class AttemptOut(BaseModel):
    """One attempt of a retried execution."""

    execution_id: str
    attempt: int
    status: ExecutionStatus
    start_after: datetime | None = Field(description="Not launched before this (the retry's backoff).")
    created_at: datetime
    finished_at: datetime | None


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
    schedule_id: str | None = Field(description="The schedule whose fire started it (or its first attempt).")
    retry_of: str | None = Field(description="For a retry: the first attempt.")
    attempt: int = Field(description="1 for a first attempt, 2 for its first retry, and so on.")
    start_after: datetime | None = Field(description="Not launched before this: a retry's backoff.")
    waiting_for: str | None = Field(
        None,
        description="In the detail of a Pending execution not launched yet: what it waits for, in words (the "
        "concurrency limit that holds it, its retry's backoff, or its turn).",
    )
    attempts: list[AttemptOut] | None = Field(
        None, description="In the detail of an execution that was retried or is a retry: every attempt, in order."
    )
    workspace_revision: str | None
    log_count: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    duration_ms: float | None
    runner: RunnerOut | None = Field(description="Null until a backend launched the execution.")


class ExecutionPage(BaseModel):
    executions: Sequence[ExecutionOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next (older) page; null on the last.")


MAX_LOG_PAGE = 10_000
"""The most log lines one page of `GET /api/executions/{id}/logs` holds, and the lines a page holds by default."""


class LogLine(BaseModel):
    line: int
    ts: datetime
    level: str
    logger: str
    message: str


class LogPage(BaseModel):
    logs: Sequence[LogLine]
    next_after: int = Field(description="Pass as `after` to get the lines after this page.")
    has_more: bool = Field(description="Whether more lines were already stored when this page was read.")


class StatusChange(BaseModel):
    """The `data` of a `status` event of an execution's stream."""

    status: ExecutionStatus
    error_type: str | None = None
    error_message: str | None = None
    duration_ms: float | None = None


class VariablesOut(BaseModel):
    execution_id: str
    variables: dict[str, Any] | None


class ResultOut(BaseModel):
    execution_id: str
    status: ExecutionStatus
    result: Any
