"""Request and response bodies of the routes a running workflow calls."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from bifrost._internal.protocol import ExecutionStatus
from control_plane.api.models.executions import ExecuteRequest
from control_plane.db.models import Execution


class SubWorkflowRequest(ExecuteRequest):
    secrets: list[str] = Field(
        default_factory=list,
        max_length=1000,
        description="Values the starting run knows as secret: where they occur in the parameters they are stored "
        "masked, and the sub-workflow's runner masks them in what it outputs.",
    )


class ChildExecutionOut(BaseModel):
    """What a running workflow learns about a sub-workflow it started."""

    execution_id: str
    status: ExecutionStatus
    result: Any
    error_type: str | None
    error_message: str | None

    @classmethod
    def of(cls, child: Execution) -> ChildExecutionOut:
        return cls(
            execution_id=child.id,
            status=child.status,
            result=child.result,
            error_type=child.error_type,
            error_message=child.error_message,
        )


class ValueOut(BaseModel):
    value: Any
