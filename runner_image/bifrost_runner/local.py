"""A workflow run on the author's machine by the runner's own code, without a server: the same import, parameter
binding, call, timeout, outcome and masking of secrets as in a runner; the context's secrets and config come from
a local file, sub-workflows run in this process too, and the log goes to the terminal."""

from __future__ import annotations

import asyncio
import getpass
import json
import signal
import time
import tomllib
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from bifrost._internal.discovery import discover_file, discover_workspace
from bifrost._internal.protocol import ExecutionStatus, RunPayload
from bifrost._internal.redaction import Redactor
from bifrost._internal.schema import validate_parameters
from bifrost._internal.storable import Storable
from bifrost.context import UserInfo
from bifrost.metadata import WorkflowInfo
from bifrost_runner.logs import captured_output
from bifrost_runner.outcome import Outcome
from bifrost_runner.run import call_workflow
from bifrost_runner.services import SubWorkflowError
from bifrost_runner.variables import capture_variables

_RESULT_STATUSES = (ExecutionStatus.SUCCESS, ExecutionStatus.COMPLETED_WITH_ERRORS)


class LocalRunError(Exception):
    """The workflow cannot be run as asked: no such workflow, a file that does not define it, bad values."""


@dataclass(frozen=True)
class LocalValues:
    """What the context's secrets and config helpers read in a local run."""

    secrets: dict[str, str] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def read(cls, path: Path) -> LocalValues:
        """A TOML file (or JSON, by its suffix) with a `secrets` table of strings and a `config` table."""
        try:
            text = path.read_text(encoding="utf-8")
            document = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise LocalRunError(f"cannot read the values file {path}: {exc}") from exc
        if not isinstance(document, dict):
            raise LocalRunError(f"the values file {path} must hold a table (an object)")
        unknown = sorted(set(document) - {"secrets", "config"})
        if unknown:
            raise LocalRunError(f"the values file {path} has unknown tables {unknown}: only `secrets` and `config`")
        secrets, config = document.get("secrets", {}), document.get("config", {})
        if not isinstance(secrets, dict) or not all(isinstance(value, str) for value in secrets.values()):
            raise LocalRunError(f"the values file {path}: `secrets` must map names to strings")
        if not isinstance(config, dict):
            raise LocalRunError(f"the values file {path}: `config` must map names to values")
        return cls(secrets=secrets, config=config)


@dataclass(frozen=True)
class LocalOutcome:
    execution_id: str
    workflow_name: str
    outcome: Outcome
    variables: dict[str, Any] | None
    duration_ms: float


class TerminalLog:
    """The `LogSink` of a local run: each record, its secrets masked, as one line on `stream`."""

    def __init__(self, stream: TextIO, redactor: Redactor) -> None:
        self._stream = stream
        self._redactor = redactor

    def add(self, created: float, level: str, logger: str, message: str) -> None:
        stamp = datetime.fromtimestamp(created, UTC).astimezone().strftime("%H:%M:%S")
        source = f"{logger}: " if logger and logger != "root" else ""
        self._stream.write(f"{stamp} {level:<7} {source}{self._redactor.text(message)}\n")
        self._stream.flush()


class LocalServices:
    """The `RuntimeServices` of a local run."""

    def __init__(self, workspace: Path, values: LocalValues, redactor: Redactor, cancel: asyncio.Future[str]) -> None:
        self._workspace = workspace
        self._values = values
        self._redactor = redactor
        self._cancel = cancel
        self._children: set[asyncio.Task[LocalOutcome]] = set()

    async def get_secret(self, name: str) -> str | None:
        value = self._values.secrets.get(name)
        if value is not None:
            self._redactor.add(value)
        return value

    async def get_config(self, name: str) -> Any:
        return self._values.config.get(name)

    async def run_workflow(self, name: str, parameters: dict[str, Any], wait: bool) -> Any:
        info = find_workflow(self._workspace, name)
        child = asyncio.ensure_future(self.call(info, parameters, timeout_seconds=None))
        if not wait:
            self._children.add(child)
            child.add_done_callback(self._children.discard)
            return f"local-{name}-{id(child):x}"
        done = await child
        if done.outcome.status in _RESULT_STATUSES:
            return done.outcome.result
        raise SubWorkflowError(name, done.execution_id, done.outcome.status.value, done.outcome.error_message)

    async def call(
        self, info: WorkflowInfo, parameters: dict[str, Any], *, timeout_seconds: float | None
    ) -> LocalOutcome:
        """Run `info`'s workflow with `parameters` (validated as the control plane validates them)."""
        payload = RunPayload(
            execution_id=f"local-{uuid.uuid4()}",
            workflow_name=info.name,
            file=info.file,
            function_name=info.function_name,
            parameters=validate_parameters(info.parameters_schema, parameters),
            user=UserInfo(id="local", name=getpass.getuser()),
            organization=None,
            timeout_seconds=int(timeout_seconds or info.timeout_seconds),
        )
        started = time.monotonic()
        outcome, invocation, parameter_names = await call_workflow(self._workspace, payload, self, self._cancel)
        variables = None
        if invocation is not None and invocation.frame is not None:
            captured = capture_variables(invocation.frame, parameter_names, self._redactor)
            variables = Storable(payload.max_json_depth).value(captured)
        if outcome.has_result:
            outcome.result = self._redactor.value(outcome.result)
        for text in ("error_message", "traceback"):
            value = getattr(outcome, text)
            if value is not None:
                setattr(outcome, text, self._redactor.text(value))
        return LocalOutcome(payload.execution_id, info.name, outcome, variables, (time.monotonic() - started) * 1000)


def find_workflow(workspace: Path, name: str) -> WorkflowInfo:
    """The workflow `name` of the workspace, found as the control plane finds it."""
    found = discover_workspace(workspace)
    for info in found.workflows:
        if info.name == name:
            return info
    for conflict in found.conflicts:
        if conflict.name == name:
            places = ", ".join(f"{place.file}:{place.line}" for place in conflict.places)
            raise LocalRunError(f"the name {name!r} is defined more than once ({places})")
    known = ", ".join(sorted(info.name for info in found.workflows)) or "none"
    raise LocalRunError(f"no workflow named {name!r} in {workspace} (workflows there: {known})")


def find_in_file(workspace: Path, file: Path, function_name: str) -> WorkflowInfo:
    """The workflow that `function_name` of `file` (a file below `workspace`) defines."""
    root, path = workspace.resolve(), file.resolve()
    if not path.is_relative_to(root):
        raise LocalRunError(f"{file} is not in the workspace {workspace} (set it with --workspace)")
    if not path.is_file():
        raise LocalRunError(f"no file {file}")
    found = discover_file(root, path)
    for info in found.workflows:
        if info.function_name == function_name:
            return info
    for error in found.errors:
        raise LocalRunError(f"{file}:{error.line or ''}: {error.message}")
    known = ", ".join(info.function_name for info in found.workflows) or "none"
    raise LocalRunError(f"{file} has no @workflow function {function_name!r} (its workflows: {known})")


def run_locally(
    workspace: Path, info: WorkflowInfo, parameters: dict[str, Any], values: LocalValues, *, log: TextIO,
    timeout_seconds: float | None,
) -> LocalOutcome:  # fmt: skip
    """Run the workflow to its end, its log on `log`. Ctrl-C cancels it, as a cancel does on the platform."""
    root = workspace.resolve()

    async def main() -> LocalOutcome:
        loop = asyncio.get_running_loop()
        cancel: asyncio.Future[str] = loop.create_future()

        def interrupted() -> None:
            loop.remove_signal_handler(signal.SIGINT)  # a second Ctrl-C stops at once
            if not cancel.done():
                cancel.set_result("interrupted (Ctrl-C)")

        loop.add_signal_handler(signal.SIGINT, interrupted)
        redactor = Redactor()
        for secret in values.secrets.values():
            redactor.add(secret)
        services = LocalServices(root, values, redactor, cancel)
        try:
            with captured_output(TerminalLog(log, redactor)):
                return await services.call(info, parameters, timeout_seconds=timeout_seconds)
        finally:
            loop.remove_signal_handler(signal.SIGINT)

    return asyncio.run(main())
