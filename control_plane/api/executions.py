"""Executions over HTTP: listing, details, logs, variables, result, the live stream, cancel."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, status
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.concurrency import run_in_threadpool

from bifrost.protocol import ExecutionStatus
from control_plane.api.dependencies import Services, ServicesDep, UserDep
from control_plane.api.models import (
    ExecutionAccepted,
    ExecutionOut,
    ExecutionPage,
    LogLine,
    LogPage,
    ResultOut,
    VariablesOut,
)
from control_plane.auth import Principal
from control_plane.db.models import MAX_LOG_LINE, Execution
from control_plane.db.session import session_scope
from control_plane.engine.live import LiveStreamLaggedError
from control_plane.engine.store import ExecutionStore, status_data
from control_plane.executions import (
    ExecutionFilters,
    InvalidCursorError,
    get_execution,
    list_executions,
    list_logs,
)

router = APIRouter(prefix="/api/executions", tags=["executions"])

MAX_PAGE = 500
BACKLOG_CHUNK_BYTES = 64 * 1024


def _visible_execution(services: Services, user: Principal, execution_id: str) -> Execution:
    with session_scope(services.db_engine) as session:
        execution = get_execution(session, user, execution_id)
    if execution is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no execution {execution_id!r}")
    return execution


@router.get("")
def list_all(
    services: ServicesDep,
    user: UserDep,
    workflow: str | None = None,
    status_: Annotated[ExecutionStatus | None, Query(alias="status")] = None,
    org: Annotated[str | None, Query(description="Platform admins only: one organization's executions.")] = None,
    user_id: Annotated[str | None, Query(alias="user")] = None,
    since: Annotated[datetime | None, Query(description="Created at or after this time.")] = None,
    until: Annotated[datetime | None, Query(description="Created before this time.")] = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
) -> ExecutionPage:
    """Executions the caller may see, newest first."""
    filters = ExecutionFilters(workflow=workflow, status=status_, org_id=org, user_id=user_id, since=since, until=until)
    try:
        with session_scope(services.db_engine) as session:
            rows, next_cursor = list_executions(session, user, filters, cursor=cursor, limit=limit)
    except InvalidCursorError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail=str(exc)) from exc
    return ExecutionPage(executions=[ExecutionOut.of(row) for row in rows], next_cursor=next_cursor)


@router.get("/{execution_id}")
def get_one(execution_id: str, services: ServicesDep, user: UserDep) -> ExecutionOut:
    """The execution, with where its runner was launched: for Kubernetes its namespace, Job, pod (while this
    replica tracks it) and the kubectl commands that inspect them."""
    execution = _visible_execution(services, user, execution_id)
    backend = services.engine.backend
    details = backend.details(execution.id) if execution.backend == backend.name else None
    return ExecutionOut.of(execution, details)


@router.get("/{execution_id}/logs")
def get_logs(
    execution_id: str,
    services: ServicesDep,
    user: UserDep,
    after: Annotated[int, Query(ge=0, le=MAX_LOG_LINE, description="Return the lines after this line number.")] = 0,
    limit: Annotated[int, Query(ge=1, le=5000)] = 1000,
) -> LogPage:
    _visible_execution(services, user, execution_id)
    with session_scope(services.db_engine) as session:
        rows = list_logs(session, execution_id, after_line=after, limit=limit + 1)
    page = rows[:limit]
    return LogPage(
        logs=[LogLine.of(row) for row in page], next_after=page[-1].line if page else after, has_more=len(rows) > limit
    )


@router.get("/{execution_id}/variables")
def get_variables(execution_id: str, services: ServicesDep, user: UserDep) -> VariablesOut:
    execution = _visible_execution(services, user, execution_id)
    return VariablesOut(execution_id=execution.id, variables=execution.variables)


@router.get("/{execution_id}/result")
def get_result(execution_id: str, services: ServicesDep, user: UserDep) -> ResultOut:
    execution = _visible_execution(services, user, execution_id)
    return ResultOut(execution_id=execution.id, status=execution.status, result=execution.result)


@router.post("/{execution_id}/cancel", status_code=status.HTTP_202_ACCEPTED)
async def cancel(execution_id: str, services: ServicesDep, user: UserDep) -> ExecutionAccepted:
    """Ask a pending or running execution to stop; 409 when it has already finished."""
    execution = await run_in_threadpool(_visible_execution, services, user, execution_id)
    if execution.status.is_terminal:
        raise HTTPException(
            status.HTTP_409_CONFLICT, detail=f"execution {execution_id!r} already finished ({execution.status.value})"
        )
    await services.engine.cancel(execution_id)
    return ExecutionAccepted(execution_id=execution_id, status=execution.status)


@router.get("/{execution_id}/stream", response_class=EventSourceResponse)
async def stream(execution_id: str, services: ServicesDep, user: UserDep) -> EventSourceResponse:
    """Server-sent events: everything so far (`log`, `status`, `variables`, `result`), then live changes
    until the execution finishes. Each event's `data` is JSON."""
    await run_in_threadpool(_visible_execution, services, user, execution_id)
    return EventSourceResponse(_execution_events(services, execution_id))


async def _execution_events(services: Services, execution_id: str) -> AsyncIterator[ServerSentEvent | bytes]:
    # Subscribe before reading the backlog: whatever commits in between arrives live, and the backlog's
    # high-water marks drop what both contain.
    async with services.engine.live(execution_id) as live:
        execution, last_line, log_events = await run_in_threadpool(_backlog, services, execution_id)
        for chunk in log_events:
            yield chunk
        if execution.variables is not None:
            yield _event("variables", execution.last_event_seq, {"variables": execution.variables})
        if execution.status.is_terminal:
            yield _event("result", execution.last_event_seq, {"result": execution.result})
        yield _event("status", execution.last_event_seq, _status_of(execution))
        if execution.status.is_terminal:
            return
        live.skip_lines_through(last_line)
        try:
            async for event in live:
                seen = last_line if event.kind == "log" else execution.last_event_seq
                if event.id > seen:
                    yield _event(event.kind, event.id, event.data)
        except LiveStreamLaggedError:
            return  # the client reconnects and starts over from the database


def _backlog(services: Services, execution_id: str) -> tuple[Execution, int, list[bytes]]:
    """The execution, its last stored log line, and its stored lines as `log` events, encoded here (off the event
    loop) many to a chunk: written one event at a time, a long log's backlog takes many times longer to send."""
    with session_scope(services.db_engine) as session:
        execution = session.get(Execution, execution_id)
        if execution is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no execution {execution_id!r}")
    logs = ExecutionStore(services.db_engine, services.cipher).log_lines(execution_id, 1, MAX_LOG_LINE)
    chunks: list[bytes] = []
    chunk = bytearray()
    for log in logs:
        chunk += _event("log", log.id, log.data).encode()
        if len(chunk) >= BACKLOG_CHUNK_BYTES:
            chunks.append(bytes(chunk))
            chunk.clear()
    if chunk:
        chunks.append(bytes(chunk))
    return execution, logs[-1].id if logs else 0, chunks


def _status_of(execution: Execution) -> dict[str, Any]:
    return status_data(
        execution.status,
        error_type=execution.error_type,
        error_message=execution.error_message,
        duration_ms=execution.duration_ms,
    )


def _event(kind: str, event_id: int, data: dict[str, Any]) -> ServerSentEvent:
    return ServerSentEvent(event=kind, id=str(event_id), data=json.dumps(data))
