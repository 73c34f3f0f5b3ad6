"""Executions over HTTP: listing, details, logs, variables, result, the live stream, cancel."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Header, Query, Response, status
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.concurrency import run_in_threadpool

from bifrost._internal.protocol import ExecutionStatus
from bifrost.api.executions import MAX_LOG_PAGE, ExecutionKind
from control_plane.api.dependencies import ServicesDep, UserDep
from control_plane.api.models.executions import (
    ExecutionAccepted,
    ExecutionOut,
    ExecutionPage,
    LogPage,
    ResultOut,
    VariablesOut,
)
from control_plane.db.models import MAX_LOG_LINE
from control_plane.executions.changes import LiveEvent, LogBatch
from control_plane.executions.service import ExecutionService

router = APIRouter(prefix="/api/executions", tags=["executions"])

MAX_PAGE = 500


@router.get("")
def list_all(
    services: ServicesDep,
    user: UserDep,
    workflow: str | None = None,
    kind: Annotated[
        ExecutionKind, Query(description="Workflow runs, or the calls of data providers for form fields' options.")
    ] = ExecutionKind.WORKFLOW,
    form: Annotated[str | None, Query(description="Only the executions started from this form.")] = None,
    status_: Annotated[ExecutionStatus | None, Query(alias="status")] = None,
    org: Annotated[str | None, Query(description="Platform admins only: one organization's executions.")] = None,
    user_id: Annotated[str | None, Query(alias="user")] = None,
    since: Annotated[datetime | None, Query(description="Created at or after this time.")] = None,
    until: Annotated[datetime | None, Query(description="Created before this time.")] = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
) -> ExecutionPage:
    """Executions of one kind the caller may see, newest first."""
    rows, next_cursor = services.executions.page(
        user,
        workflow=workflow,
        kind=kind,
        form_id=form,
        status=status_,
        org_id=org,
        user_id=user_id,
        since=since,
        until=until,
        cursor=cursor,
        limit=limit,
    )
    return ExecutionPage(executions=[ExecutionOut.of(row) for row in rows], next_cursor=next_cursor)


@router.get("/{execution_id}")
def get_one(execution_id: str, services: ServicesDep, user: UserDep) -> ExecutionOut:
    """The execution, with where its runner was launched: for Kubernetes its namespace, Job, pod (while this
    replica tracks it) and the kubectl commands that inspect them; and, for a retried execution or a retry, every
    attempt; for one waiting to be launched, what it waits for."""
    execution, runner = services.executions.with_runner(user, execution_id)
    executions = services.executions
    return ExecutionOut.of(execution, runner, executions.attempts(execution), executions.waiting_for(execution))


@router.get("/{execution_id}/logs", response_model=LogPage)
def get_logs(
    execution_id: str,
    services: ServicesDep,
    user: UserDep,
    after: Annotated[int, Query(ge=0, le=MAX_LOG_LINE, description="Return the lines after this line number.")] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_LOG_PAGE)] = MAX_LOG_PAGE,
) -> Response:
    """A page of the stored log: up to `limit` lines after line `after`, in order."""
    page, has_more = services.executions.logs(user, execution_id, after_line=after, limit=limit)
    next_after = page.last_line if page.count else after
    # The lines come as JSON from the database; reading them as models to write them again took most of the time
    body = f'{{"logs":{page.json},"next_after":{next_after},"has_more":{"true" if has_more else "false"}}}'
    return Response(body.encode(), media_type="application/json")


@router.get("/{execution_id}/variables")
def get_variables(execution_id: str, services: ServicesDep, user: UserDep) -> VariablesOut:
    execution = services.executions.visible(user, execution_id)
    return VariablesOut(execution_id=execution.id, variables=execution.variables)


@router.get("/{execution_id}/result")
def get_result(execution_id: str, services: ServicesDep, user: UserDep) -> ResultOut:
    execution = services.executions.visible(user, execution_id)
    return ResultOut(execution_id=execution.id, status=execution.status, result=execution.result)


@router.post("/{execution_id}/cancel", status_code=status.HTTP_202_ACCEPTED)
async def cancel(execution_id: str, services: ServicesDep, user: UserDep) -> ExecutionAccepted:
    """Ask a pending or running execution to stop; 409 when it has already finished."""
    execution = await services.executions.cancel(user, execution_id)
    return ExecutionAccepted(execution_id=execution_id, status=execution.status)


@router.get("/{execution_id}/stream", response_class=EventSourceResponse)
async def stream(
    execution_id: str,
    services: ServicesDep,
    user: UserDep,
    last_event_id: Annotated[
        int | None,
        Header(
            alias="Last-Event-ID",
            ge=0,
            le=MAX_LOG_LINE,
            description="Resume: the `id` of the last event received; the log lines up to it are not sent again.",
        ),
    ] = None,
) -> EventSourceResponse:
    """Server-sent events: everything so far (`log`, `status`, `variables`, `result`), then live changes
    until the execution finishes. Each event's `data` is JSON; its `id` is the number of the last log line sent
    so far, so a client that reconnects with `Last-Event-ID` gets every line exactly once."""
    await run_in_threadpool(services.executions.visible, user, execution_id)
    return EventSourceResponse(_server_sent(services.executions, execution_id, last_event_id or 0))


async def _server_sent(
    executions: ExecutionService, execution_id: str, after_line: int
) -> AsyncIterator[ServerSentEvent | bytes]:
    """Each event's `id` is the number of the last log line sent so far."""
    last_line = after_line
    async for event in executions.follow(execution_id, after_line=after_line):
        if isinstance(event, LogBatch):
            last_line = event.last_line
            # Written as `ServerSentEvent.encode` writes it, without its pass over every line of the data: the
            # batch's JSON holds no line break.
            yield f"id: {last_line}\r\nevent: logs\r\ndata: {event.json}\r\n\r\n".encode()
            continue
        if event.kind == "log":
            last_line = event.id
        yield _server_sent_event(event, last_line)


def _server_sent_event(event: LiveEvent, last_line: int) -> ServerSentEvent:
    return ServerSentEvent(event=event.kind, id=str(last_line), data=json.dumps(event.data))
