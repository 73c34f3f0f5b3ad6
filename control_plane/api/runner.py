"""The routes a running workflow calls with its execution token, and nothing else does."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status
from starlette.concurrency import run_in_threadpool

from bifrost._internal.protocol import RunPayload
from bifrost.api.executions import Trigger
from control_plane.api.dependencies import RunnerDep, ServicesDep
from control_plane.api.models.executions import ExecutionAccepted
from control_plane.api.models.runner import ChildExecutionOut, SubWorkflowRequest, ValueOut
from control_plane.api.starting import start_or_raise
from control_plane.db.models import ConfigEntry, Secret
from control_plane.executions.service import Starter
from control_plane.security.scoped_values import entry_for_run, secret_value
from control_plane.security.workflow_access import may_start_from_run

router = APIRouter(prefix="/api/runner", tags=["runner"])

MAX_WAIT_SECONDS = 60


@router.get("/payload")
def payload(claims: RunnerDep, services: ServicesDep) -> RunPayload:
    """What the runner needs to run its execution."""
    return services.executions.runner_payload(claims.execution_id)


@router.post("/workflows/{name}/run", status_code=status.HTTP_202_ACCEPTED)
async def run_child(
    name: str, claims: RunnerDep, services: ServicesDep, request: SubWorkflowRequest
) -> ExecutionAccepted:
    """Start a sub-workflow as the same user and organization. It is launched at once, bypassing the queue:
    its parent already holds a run slot and waits for it, so queueing it could deadlock a full system."""
    if not await run_in_threadpool(may_start_from_run, services.db_engine, claims, name):
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail=f"workflow {name!r} is restricted to other roles")
    starter = Starter(user_id=claims.user_id, org_id=claims.org_id)
    execution, _ = await start_or_raise(
        services,
        name,
        request.parameters,
        starter=starter,
        sync=True,
        parent_execution_id=claims.execution_id,
        secrets=request.secrets,
        trigger=Trigger.WORKFLOW,
    )
    return ExecutionAccepted(execution_id=execution.id, status=execution.status)


@router.get("/executions/{execution_id}")
async def child_execution(
    execution_id: str,
    claims: RunnerDep,
    services: ServicesDep,
    wait: Annotated[float, Query(ge=0, le=MAX_WAIT_SECONDS, description="Seconds to wait for it to finish.")] = 0,
) -> ChildExecutionOut:
    """A sub-workflow this execution started; with `wait`, answers as soon as it finishes."""
    return ChildExecutionOut.of(await services.executions.child(claims.execution_id, execution_id, wait=wait))


@router.get(
    "/secrets/{name}",
    responses={404: {"description": "No such secret."}, 409: {"description": "No configured key decrypts it."}},
)
def secret(name: str, claims: RunnerDep, services: ServicesDep) -> ValueOut:
    """The secret of the execution's organization, else the global one."""
    entry = entry_for_run(services.db_engine, claims, Secret, name)
    if entry is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no secret named {name!r}")
    return ValueOut(value=secret_value(services.cipher, entry))


@router.get("/config/{name}", responses={404: {"description": "No such config entry."}})
def config(name: str, claims: RunnerDep, services: ServicesDep) -> ValueOut:
    """The config entry of the execution's organization, else the global one."""
    entry = entry_for_run(services.db_engine, claims, ConfigEntry, name)
    if entry is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no config entry named {name!r}")
    return ValueOut(value=entry.value)
