"""What `context.get_secret`, `context.get_config` and `workflows.run` do inside a runner: control-plane calls
with the execution's token, so they act as the user who started it, in their org."""

from __future__ import annotations

from typing import Any

from bifrost._internal.protocol import ExecutionStatus
from bifrost._internal.redaction import Redactor
from bifrost_runner.api import LONG_POLL_SECONDS, ApiClient


class SubWorkflowError(RuntimeError):
    """A sub-workflow started with `wait=True` did not succeed."""

    def __init__(self, name: str, execution_id: str, status: str, message: str | None) -> None:
        detail = f": {message}" if message else ""
        super().__init__(f"sub-workflow {name!r} (execution {execution_id}) ended {status}{detail}")
        self.execution_id = execution_id
        self.status = status


_RESULT_STATUSES = (ExecutionStatus.SUCCESS, ExecutionStatus.COMPLETED_WITH_ERRORS)


class ApiRuntimeServices:
    """The `bifrost.context.RuntimeServices` of a runner."""

    def __init__(self, api: ApiClient, redactor: Redactor) -> None:
        self._api = api
        self._redactor = redactor

    async def run_workflow(self, name: str, parameters: dict[str, Any], wait: bool) -> Any:
        child_id = await self._api.start_workflow(name, parameters, self._redactor.found_in(parameters))
        if not wait:
            return child_id
        while True:
            execution = await self._api.execution(child_id, LONG_POLL_SECONDS)
            status = ExecutionStatus(execution["status"])
            if status.is_terminal:
                break
        if status in _RESULT_STATUSES:
            return execution.get("result")
        raise SubWorkflowError(name, child_id, status.value, execution.get("error_message"))

    async def get_secret(self, name: str) -> str | None:
        value = await self._api.secret(name)
        if value is None:
            return None
        self._redactor.add(str(value))
        return str(value)

    async def get_config(self, name: str) -> Any:
        return await self._api.config(name)
