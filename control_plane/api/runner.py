"""The routes a running workflow calls with its execution token, and nothing else does."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from bifrost.protocol import RunPayload
from control_plane.api.dependencies import RunnerDep, Services, ServicesDep
from control_plane.api.models.executions import ChildExecutionOut, ExecutionAccepted, SubWorkflowRequest, ValueOut
from control_plane.api.starting import start_or_raise
from control_plane.db.models import ConfigEntry, Execution, Secret, User
from control_plane.db.session import session_scope
from control_plane.executions.repository import ExecutionStore
from control_plane.executions.service import Starter
from control_plane.security.encryption import SecretDecryptionError
from control_plane.security.principals import ExecutionClaims, principal_of
from control_plane.security.scoped_values import Entry, resolve_entry
from control_plane.security.workflow_access import may_start

router = APIRouter(prefix="/api/runner", tags=["runner"])

MAX_WAIT_SECONDS = 60


def _running_user(session: Session, claims: ExecutionClaims) -> User:
    """The token's user (`RunnerDep` has checked that the execution still runs); 401 when the user is gone."""
    user = session.get(User, claims.user_id)
    if user is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail="the token's user no longer exists")
    return user


@router.get("/payload")
def payload(claims: RunnerDep, services: ServicesDep) -> RunPayload:
    """What the runner needs to run its execution."""
    target = ExecutionStore(services.db_engine, services.cipher).run_target(
        claims.execution_id, services.settings.max_result_bytes, services.settings.max_json_depth
    )
    if target is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail="the token's execution no longer exists")
    if target.payload is None:
        problem = target.problem.message if target.problem else "the execution cannot run"
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=problem)
    return target.payload


@router.post("/workflows/{name}/run", status_code=status.HTTP_202_ACCEPTED)
async def run_child(
    name: str, claims: RunnerDep, services: ServicesDep, request: SubWorkflowRequest
) -> ExecutionAccepted:
    """Start a sub-workflow as the same user and organization. It is launched at once, bypassing the queue:
    its parent already holds a run slot and waits for it, so queueing it could deadlock a full system."""
    if not await run_in_threadpool(_may_start_child, services, claims, name):
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
    )
    return ExecutionAccepted(execution_id=execution.id, status=execution.status)


def _may_start_child(services: Services, claims: ExecutionClaims, name: str) -> bool:
    """Whether the execution's user, in the execution's organization, may start workflow `name`."""
    with session_scope(services.db_engine) as session:
        user = _running_user(session, claims)
        principal = replace(principal_of(session, user), org_id=claims.org_id)
        return may_start(session, principal, name)


@router.get("/executions/{execution_id}")
async def child_execution(
    execution_id: str,
    claims: RunnerDep,
    services: ServicesDep,
    wait: Annotated[float, Query(ge=0, le=MAX_WAIT_SECONDS, description="Seconds to wait for it to finish.")] = 0,
) -> ChildExecutionOut:
    """A sub-workflow this execution started; with `wait`, answers as soon as it finishes."""
    child = await run_in_threadpool(_child, services, claims, execution_id)
    if not child.status.is_terminal and wait > 0:
        await services.engine.wait_terminal(execution_id, wait)
        child = await run_in_threadpool(_child, services, claims, execution_id)
    return ChildExecutionOut(
        execution_id=child.id,
        status=child.status,
        result=child.result,
        error_type=child.error_type,
        error_message=child.error_message,
    )


def _child(services: Services, claims: ExecutionClaims, execution_id: str) -> Execution:
    with session_scope(services.db_engine) as session:
        child = session.get(Execution, execution_id)
    if child is None or child.parent_execution_id != claims.execution_id:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no sub-workflow execution {execution_id!r}")
    return child


@router.get(
    "/secrets/{name}",
    responses={404: {"description": "No such secret."}, 409: {"description": "No configured key decrypts it."}},
)
def secret(name: str, claims: RunnerDep, services: ServicesDep) -> ValueOut:
    """The secret of the execution's organization, else the global one."""
    entry = _entry_for_run(services, claims, Secret, name)
    if entry is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no secret named {name!r}")
    try:
        return ValueOut(value=services.cipher.decrypt(entry.ciphertext))
    except SecretDecryptionError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=f"secret {name!r}: {exc}") from exc


@router.get("/config/{name}", responses={404: {"description": "No such config entry."}})
def config(name: str, claims: RunnerDep, services: ServicesDep) -> ValueOut:
    """The config entry of the execution's organization, else the global one."""
    entry = _entry_for_run(services, claims, ConfigEntry, name)
    if entry is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no config entry named {name!r}")
    return ValueOut(value=entry.value)


def _entry_for_run(services: Services, claims: ExecutionClaims, model: type[Entry], name: str) -> Entry | None:
    """What the running execution reads as `name`: its organization's entry, else the global one."""
    with session_scope(services.db_engine) as session:
        _running_user(session, claims)
        return resolve_entry(session, model, claims.org_id, name)
