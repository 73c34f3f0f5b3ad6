"""One execution, start to finish: payload, events, the workflow call, its outcome."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import io
import logging
import os
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from pydantic import ValidationError

from bifrost._internal.protocol import (
    RUNNER_EXIT_CODES,
    RUNNER_EXIT_UNREPORTED,
    CancelRequest,
    ExecutionStatus,
    FinishedEvent,
    ResultEvent,
    RunPayload,
    StartedEvent,
    VariablesEvent,
    control_subject,
)
from bifrost._internal.redaction import Redactor
from bifrost._internal.schema import ParameterValidationError, bind_arguments
from bifrost._internal.storable import Storable, storable_text
from bifrost.context import ExecutionContext, RuntimeServices, UserInfo, use_context
from bifrost_runner.api import ApiClient, ApiError
from bifrost_runner.checkout import Checkout, checked_out
from bifrost_runner.config import RunnerConfig
from bifrost_runner.confinement import Confinement
from bifrost_runner.connection import (
    NatsUnavailableError,
    ReadyConnection,
    connect_runner_nats,
    rehearsal_connection,
)
from bifrost_runner.execute import Invocation, invoke
from bifrost_runner.loader import WorkflowLoadError, load_workflow
from bifrost_runner.logs import LogCollector, captured_output
from bifrost_runner.outcome import Outcome, failure, outcome_of
from bifrost_runner.publisher import EventPublisher, EventTooLargeError
from bifrost_runner.redaction import redacted_handlers
from bifrost_runner.services import ApiRuntimeServices
from bifrost_runner.sync import WorkspaceSyncError
from bifrost_runner.variables import capture_variables

log = logging.getLogger("bifrost_runner")

STARTED_HOLD_SECONDS = 0.05
"""How long the `started` event waits for the next events, to leave with them."""


@dataclass
class Preconnected:
    """What a ready runner set up before its claim came: the API client for the URL its execution was expected
    to use (it connects on first use: most executions never call the API). NATS waits for the claim, which
    brings the execution's own NATS identity."""

    api_url: str
    api: ApiClient

    async def close(self) -> None:
        await self.api.aclose()


def preconnect(api_url: str) -> Preconnected:
    """Make the API client."""
    return Preconnected(api_url, ApiClient(api_url, token=""))


async def run_execution(
    config: RunnerConfig,
    preconnected: Preconnected | None = None,
    handed_payload: RunPayload | None = None,
    confinement: Confinement | None = None,
    ready: ReadyConnection | None = None,
) -> int:
    """Run the execution of `config`; once its `finished` event is stored in JetStream, the exit code of the final
    status it reported (`RUNNER_EXIT_CODES`: 0 for Success only), else `RUNNER_EXIT_UNREPORTED`.

    The API client in `preconnected` is used when it leads where `config` says, and closed otherwise; so is the
    NATS connection `ready`, made while the runner waited for its claim. The payload is fetched from the control
    plane unless the backend handed it over. With `confinement`, the workspace is checked out through its writable
    cache, and the runner seals itself before the workflow's code is imported."""
    api = await _take_preconnected(config, preconnected)
    if api is None:
        api = ApiClient(config.api_url, config.token)
    payload: asyncio.Future[RunPayload]
    if handed_payload is None:
        payload = asyncio.ensure_future(api.payload())
    else:
        payload = asyncio.get_running_loop().create_future()
        payload.set_result(handed_payload)
    nc = None
    if ready is not None and ready.serves(config):
        nc = await ready.take(config)
    elif ready is not None:
        # Made under another execution's identity (one no execution will have): of no use, and let go before
        # any workflow code runs.
        await ready.close()
    try:
        if nc is None:
            # Waiting for NATS longer than the workflow may run is pointless: the backend stops the runner then.
            nc = await connect_runner_nats(config, give_up_after=config.timeout_seconds)
    except NatsUnavailableError as exc:
        log.error("cannot report execution %s: %s", config.execution_id, exc)
        payload.cancel()
        await api.aclose()
        if ready is not None:
            await ready.close()
        return RUNNER_EXIT_UNREPORTED
    publisher = EventPublisher(nc, config.execution_id)
    await publisher.start()
    try:
        status = await _report_execution(config, api, payload, publisher, nc, confinement)
        reported = await publisher.wait_acknowledged(config.report_seconds)
    finally:
        await publisher.close()
        if ready is not None:
            await ready.close()
        await nc.close()
        await api.aclose()
    if not reported:
        log.error(
            "execution %s: events not acknowledged by NATS within %.0f s", config.execution_id, config.report_seconds
        )
    return RUNNER_EXIT_CODES[status] if reported else RUNNER_EXIT_UNREPORTED


async def _take_preconnected(config: RunnerConfig, preconnected: Preconnected | None) -> ApiClient | None:
    if preconnected is None:
        return None
    if preconnected.api_url != config.api_url:
        await preconnected.api.aclose()
        return None
    preconnected.api.authorize(config.token)
    return preconnected.api


async def _cancel_signal(nc: NATS, execution_id: str) -> asyncio.Future[str]:
    """Resolves with the reason of the first cancel request published for the execution."""
    cancel: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def on_control(msg: Msg) -> None:
        try:
            request = CancelRequest.model_validate_json(msg.data)
        except ValidationError:
            log.warning("ignored a malformed control message: %r", msg.data[:200])
            return
        if not cancel.done():
            cancel.set_result(request.reason)

    await nc.subscribe(control_subject(execution_id), cb=on_control)
    return cancel


async def _report_execution(
    config: RunnerConfig,
    api: ApiClient,
    payload_request: asyncio.Future[RunPayload],
    publisher: EventPublisher,
    nc: NATS,
    confinement: Confinement | None,
) -> ExecutionStatus:
    """The final status of the execution, once its `finished` event is emitted."""
    try:
        payload = await payload_request
    except ApiError as exc:
        publisher.emit(
            FinishedEvent,
            status=ExecutionStatus.FAILED,
            error_type="PayloadUnavailable",
            error_message=storable_text(str(exc)),
        )
        return ExecutionStatus.FAILED
    try:
        writable_cache = confinement.writable_cache if confinement is not None else None
        async with checked_out(config, payload.workspace_revision, writable_cache) as checkout:
            if confinement is not None:
                confinement.seal()
            return await _run_workflow(checkout, payload, api, publisher, nc)
    except WorkspaceSyncError as exc:
        log.error("execution %s: %s", config.execution_id, exc)
        publisher.emit(
            FinishedEvent,
            status=ExecutionStatus.FAILED,
            error_type="WorkspaceSyncError",
            error_message=storable_text(str(exc)),
        )
        return ExecutionStatus.FAILED


async def _run_workflow(
    checkout: Checkout, payload: RunPayload, api: ApiClient, publisher: EventPublisher, nc: NATS
) -> ExecutionStatus:
    started = time.monotonic()
    publisher.emit(
        StartedEvent,
        pid=os.getpid(),
        hostname=socket.gethostname(),
        workspace_revision=checkout.revision,
        sync_seconds=checkout.sync_seconds,
    )
    publisher.hold(STARTED_HOLD_SECONDS)
    cancel = await _cancel_signal(nc, payload.execution_id)
    redactor = Redactor()
    for secret in payload.secrets:
        redactor.add(secret)
    services = ApiRuntimeServices(api, redactor)
    collector = LogCollector(publisher, sys.__stdout__ or sys.stdout, redactor)
    publishing_logs = asyncio.create_task(collector.run())
    try:
        with captured_output(collector), redacted_handlers(log, redactor):
            outcome, invocation, parameter_names = await call_workflow(checkout.folder, payload, services, cancel)
    finally:
        publishing_logs.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await publishing_logs
    collector.publish(final=True)
    return _publish_outcome(
        publisher, redactor, outcome, invocation, parameter_names, time.monotonic() - started, payload.max_json_depth
    )


def _publish_outcome(
    publisher: EventPublisher,
    redactor: Redactor,
    outcome: Outcome,
    invocation: Invocation | None,
    parameter_names: set[str],
    seconds: float,
    max_json_depth: int,
) -> ExecutionStatus:
    """The closing events: the workflow's variables, its result, and how it finished, made storable; the final
    status."""
    storable = Storable(max_json_depth)
    if invocation is not None and invocation.frame is not None:
        variables = capture_variables(invocation.frame, parameter_names, redactor)
        publisher.emit(VariablesEvent, variables=storable.value(variables))
    if outcome.has_result:
        try:
            publisher.emit(ResultEvent, result=redactor.value(outcome.result))
        except EventTooLargeError as exc:
            outcome = Outcome(ExecutionStatus.FAILED, error_type="ResultTooLarge", error_message=str(exc))
    publisher.emit(
        FinishedEvent,
        status=outcome.status,
        error_type=None if outcome.error_type is None else storable.text(outcome.error_type),
        error_message=None if outcome.error_message is None else storable.text(redactor.text(outcome.error_message)),
        traceback=None if outcome.traceback is None else storable.text(redactor.text(outcome.traceback)),
        duration_ms=seconds * 1000,
        user_error=outcome.user_error,
    )
    return outcome.status


def _context(payload: RunPayload, services: RuntimeServices) -> ExecutionContext:
    return ExecutionContext(
        execution_id=payload.execution_id,
        workflow_name=payload.workflow_name,
        user=payload.user,
        organization=payload.organization,
        is_platform_admin=payload.is_platform_admin,
        parameters=payload.parameters,
        parent_execution_id=payload.parent_execution_id,
    ).bind(services)


def _parameter_names(func: Callable[..., Any]) -> set[str]:
    return set(inspect.signature(inspect.unwrap(func)).parameters)


async def call_workflow(
    workspace_dir: Path, payload: RunPayload, services: RuntimeServices, cancel: asyncio.Future[str]
) -> tuple[Outcome, Invocation | None, set[str]]:
    """Import the payload's workflow from `workspace_dir` and call it with its context: how it ended, the call
    (with the frame its variables are read from) and its parameters' names. `cancel` interrupts it."""
    ctx = _context(payload, services)
    with use_context(ctx):
        try:
            func = load_workflow(workspace_dir, payload.file, payload.function_name)
        except WorkflowLoadError as exc:
            return Outcome(ExecutionStatus.FAILED, error_type="WorkflowNotFound", error_message=str(exc)), None, set()
        except Exception as exc:  # the module failed to import: the author's error, with its traceback
            return failure(exc), None, set()
        return await _call(func, payload, ctx, cancel)


async def _call(
    func: Callable[..., Any], payload: RunPayload, ctx: ExecutionContext, cancel: asyncio.Future[str]
) -> tuple[Outcome, Invocation | None, set[str]]:
    try:
        kwargs = bind_arguments(func, payload.parameters, ctx)
    except ParameterValidationError as exc:
        outcome = Outcome(ExecutionStatus.FAILED, error_type="ParameterValidationError", error_message=str(exc))
        return outcome, None, set()
    except Exception as exc:  # an annotation the SDK cannot bind: the author's error, with its traceback
        return failure(exc), None, set()
    invocation = await invoke(func, kwargs, payload.timeout_seconds, cancel)
    reason = cancel.result() if cancel.done() else ""
    outcome = outcome_of(
        invocation, payload.timeout_seconds, reason, payload.max_result_bytes, payload.max_json_depth
    )
    return outcome, invocation, _parameter_names(func)


REHEARSAL_FOLDER = Path(__file__).parent / "rehearsal"
REHEARSAL_MODULE = "rehearsal_flow"


async def rehearse(preconnected: Preconnected) -> None:
    """Take an execution's steps once, with a stand-in workflow, connected to a stand-in NATS server and
    publishing nothing.

    A ready runner shares its template's memory copy-on-write, and its first write to each page copies that
    page: some 650 pages for a trivial execution, about 4 ms on a virtual machine. A runner that rehearses
    while it waits for its claim has made those copies before the execution's clock starts. The stand-in is
    imported from its own folder as a workspace module is, and forgotten afterwards."""
    payload = RunPayload(
        execution_id="rehearsal",
        workflow_name="rehearsal",
        file=f"{REHEARSAL_MODULE}.py",
        function_name="rehearse",
        parameters={"count": 1},
        user=UserInfo(id="rehearsal"),
        organization=None,
        timeout_seconds=60,
    )
    async with rehearsal_connection() as nc:
        await _rehearse_execution(preconnected, payload, EventPublisher(nc, payload.execution_id))


async def _rehearse_execution(preconnected: Preconnected, payload: RunPayload, publisher: EventPublisher) -> None:
    """The steps of `rehearse`, with a publisher never started: nothing is sent."""
    redactor = Redactor()
    collector = LogCollector(publisher, io.StringIO(), redactor)
    services = ApiRuntimeServices(preconnected.api, redactor)
    started = time.monotonic()
    try:
        with captured_output(collector):
            outcome, invocation, parameter_names = await call_workflow(
                REHEARSAL_FOLDER, payload, services, asyncio.get_running_loop().create_future()
            )
    finally:
        _forget_rehearsal_module()
    collector.publish(final=True)
    _publish_outcome(
        publisher, redactor, outcome, invocation, parameter_names, time.monotonic() - started, payload.max_json_depth
    )


def _forget_rehearsal_module() -> None:
    """Leave the imports as they were: no trace of the stand-in's module or of its folder on the path."""
    sys.modules.pop(REHEARSAL_MODULE, None)
    folder = str(REHEARSAL_FOLDER.resolve())
    while folder in sys.path:
        sys.path.remove(folder)
    sys.path_importer_cache.pop(folder, None)
