"""Starting an execution over HTTP: the answers every route that starts one gives."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from bifrost._internal.schema import ParameterValidationError
from bifrost.api.executions import Trigger
from control_plane.api.dependencies import Services
from control_plane.api.models.executions import ExecutionAccepted, ExecutionOut
from control_plane.db.models import Execution
from control_plane.executions.service import Starter


async def start_or_raise(
    services: Services,
    workflow_name: str,
    parameters: dict[str, Any],
    *,
    starter: Starter,
    sync: bool | None,
    parent_execution_id: str | None = None,
    wait_seconds: float | None = None,
    secrets: Sequence[str] = (),
    trigger: Trigger = Trigger.API,
) -> tuple[Execution, bool]:
    """Start an execution; 422 with per-field errors for bad parameters (and, as every refusal, 404 for an unknown
    workflow)."""
    try:
        return await services.executions.start(
            workflow_name,
            parameters,
            starter=starter,
            sync=sync,
            parent_execution_id=parent_execution_id,
            wait_seconds=wait_seconds,
            secrets=secrets,
            trigger=trigger,
        )
    except ParameterValidationError as exc:
        # The same 422 body FastAPI gives for a malformed request, located under `parameters`.
        raise RequestValidationError(
            [{"loc": ("parameters", *_path(e.field)), "msg": e.message, "type": e.type} for e in exc.errors]
        ) from exc


async def start_and_answer(
    services: Services,
    workflow_name: str,
    parameters: dict[str, Any],
    *,
    starter: Starter,
    sync: bool | None,
    trigger: Trigger = Trigger.API,
) -> Response:
    """200 with the finished execution when it ran sync and finished in time, else 202 with its id."""
    wait_seconds = services.settings.sync_wait_seconds
    execution, ran_sync = await start_or_raise(
        services, workflow_name, parameters, starter=starter, sync=sync, wait_seconds=wait_seconds, trigger=trigger
    )
    return started_answer(execution, ran_sync)


def started_answer(execution: Execution, ran_sync: bool) -> Response:
    """What a route that started an execution answers: 200 with the finished execution when it ran sync and
    finished in time, else 202 with its id."""
    if ran_sync and execution.status.is_terminal:
        return Response(ExecutionOut.of(execution).model_dump_json(), media_type="application/json")
    accepted = ExecutionAccepted(execution_id=execution.id, status=execution.status)
    return JSONResponse(accepted.model_dump(mode="json"), status_code=status.HTTP_202_ACCEPTED)


def _path(dotted_field: str) -> tuple[str | int, ...]:
    """`items.2.name` as ("items", 2, "name"), the way FastAPI locates errors."""
    return tuple(int(part) if part.isdigit() else part for part in dotted_field.split(".") if part)
