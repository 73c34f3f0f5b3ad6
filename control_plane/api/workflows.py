"""The registry over HTTP, and the routes that start workflows: execute and endpoints."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Query, Request, status
from fastapi.responses import Response

from bifrost.api.executions import Trigger
from bifrost.metadata import WorkflowInfo
from control_plane.api.dependencies import ServicesDep, StarterDep, UserDep
from control_plane.api.models.executions import ExecuteRequest, ExecutionAccepted, ExecutionOut
from control_plane.api.models.workflows import WorkspaceProblemOut
from control_plane.api.starting import start_and_answer

router = APIRouter(prefix="/api", tags=["workflows"])

_START_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": ExecutionOut, "description": "Ran sync and finished within the sync wait."},
    202: {"model": ExecutionAccepted, "description": "Started; follow it by its execution id."},
    404: {"description": "No such workflow."},
    422: {"description": "Invalid parameters, one error per field."},
}


@router.get("/workflows")
def list_workflows(services: ServicesDep, _user: UserDep) -> list[WorkflowInfo]:
    return list(services.registry.snapshot.workflows.values())


@router.get("/workflows/{name}")
def get_workflow(name: str, services: ServicesDep, _user: UserDep) -> WorkflowInfo:
    workflow = services.registry.get(name)
    if workflow is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no workflow named {name!r} in the workspace")
    return workflow


@router.get("/workspace/errors")
def list_workspace_errors(services: ServicesDep, _user: UserDep) -> list[WorkspaceProblemOut]:
    """What keeps files of the workspace from registering their workflows: syntax errors, bad decorators,
    duplicate names."""
    return [WorkspaceProblemOut.of(problem) for problem in services.registry.snapshot.problems]


@router.post("/workflows/{name}/execute", responses=_START_RESPONSES)
async def execute_workflow(
    name: str,
    services: ServicesDep,
    starter: StarterDep,
    request: ExecuteRequest | None = None,
    sync: Annotated[bool | None, Query(description="Wait for the result; default: the workflow's mode.")] = None,
) -> Response:
    """Start a workflow. A sync run answers with the finished execution when it ends within the sync wait."""
    parameters = request.parameters if request else {}
    return await start_and_answer(services, name, parameters, starter=starter, sync=sync, trigger=Trigger.API)


@router.post("/endpoints/{name}", responses=_START_RESPONSES)
async def call_endpoint(
    name: str,
    request: Request,
    services: ServicesDep,
    starter: StarterDep,
    body: Annotated[dict[str, Any] | None, Body(description="Parameters; they win over query parameters.")] = None,
) -> Response:
    """Call a workflow marked `endpoint_enabled` with its parameters as query parameters and/or a JSON object.
    Sync unless the workflow says `execution_mode="async"`."""
    workflow = services.registry.get(name)
    if workflow is None or not workflow.endpoint_enabled:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no endpoint-enabled workflow named {name!r}")
    parameters: dict[str, Any] = {**request.query_params, **(body or {})}
    return await start_and_answer(services, name, parameters, starter=starter, sync=None, trigger=Trigger.ENDPOINT)
