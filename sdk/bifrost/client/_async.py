"""The asynchronous client: what `Client` does, awaited."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime
from types import TracebackType
from typing import Any, TypeVar

import httpx

from bifrost.api.api_keys import ApiKeyCreated, ApiKeyOut
from bifrost.api.audit import AuditPage
from bifrost.api.config import ConfigOut
from bifrost.api.executions import (
    ExecutionAccepted,
    ExecutionOut,
    ExecutionPage,
    ExecutionStatus,
    LogPage,
    ResultOut,
    VariablesOut,
)
from bifrost.api.health import Readiness
from bifrost.api.orgs import MemberOut, OrgOut, OrgRole
from bifrost.api.schedules import ScheduleIn, ScheduleOut, SchedulePatch
from bifrost.api.secrets import RotationOut, SecretOut
from bifrost.api.sessions import SessionOut
from bifrost.api.users import UserIn, UserOut, UserPatch
from bifrost.api.workflow_access import AccessOut
from bifrost.api.workflows import WorkspaceProblemOut
from bifrost.api.workspace import WorkspaceFileOut, WorkspaceListing
from bifrost.client import _calls as calls
from bifrost.client._base import ClientSettings, follow_request, stream_failure
from bifrost.client._retry import Retry, never_sent, reason, retry_after
from bifrost.client._stream import EventLines, StreamEvent
from bifrost.client.errors import ConnectionFailedError, ExecutionFailedError
from bifrost.client.profiles import Connection, resolve
from bifrost.metadata import WorkflowInfo

T = TypeVar("T")


class AsyncClient:
    """Bifrost's HTTP API for asyncio: the methods of `Client`, awaited (`follow` is an async iterator).

    async with AsyncClient("https://bifrost.example.com", api_key) as bifrost:
        execution = await bifrost.run("create_user", {"email": "a@example.com"}, check=True)
    """

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        *,
        org: str | None = None,
        timeout: float = 60.0,
        retry: Retry | None = None,
    ) -> None:
        self._settings = ClientSettings.of(url, api_key, org=org, timeout=timeout, retry=retry)
        self._http = httpx.AsyncClient(
            base_url=self._settings.url, headers=self._settings.headers, timeout=self._settings.timeout
        )

    @classmethod
    def connect(cls, *, profile: str | None = None, org: str | None = None, **options: Any) -> AsyncClient:
        """A client for the server a profile or the environment names (see `bifrost.client.profiles`)."""
        return cls.of(resolve(profile=profile, org=org), **options)

    @classmethod
    def of(cls, connection: Connection, **options: Any) -> AsyncClient:
        return cls(connection.url, connection.api_key, org=connection.org, **options)

    @property
    def url(self) -> str:
        return self._settings.url

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self.aclose()

    async def send(self, call: calls.Call[T]) -> T:
        """Send one call, retrying as the client's `Retry` says."""
        retry = self._settings.retry
        failures = 0
        while True:
            try:
                response = await self._http.request(
                    call.method, call.path, params=call.params, json=call.json, content=call.content
                )
            except httpx.TransportError as exc:
                failures += 1
                if failures >= retry.attempts or not (never_sent(exc) or call.idempotent):
                    raise ConnectionFailedError(self.url, reason(exc), failures) from exc
                await asyncio.sleep(retry.delay(failures))
                continue
            if response.status_code == 503 and 503 not in call.accept and failures + 1 < retry.attempts:
                failures += 1
                await asyncio.sleep(retry.delay(failures, retry_after(response)))
                continue
            return call.answer(response)

    async def run(self, name: str, parameters: dict[str, Any] | None = None, *, check: bool = False) -> ExecutionOut:
        """Start a workflow and wait until it finishes; the finished execution. `check`: raise
        `ExecutionFailedError` unless it succeeded. To wait only so long, wrap it in `asyncio.timeout`."""
        started = await self.execute(name, parameters)
        execution = started if isinstance(started, ExecutionOut) else await self.wait(started.execution_id)
        if check and execution.status is not ExecutionStatus.SUCCESS:
            raise ExecutionFailedError(execution)
        return execution

    async def follow(self, execution_id: str, *, after_line: int = 0) -> AsyncIterator[StreamEvent]:
        """The execution's events as they happen, as `Client.follow` gives them."""
        retry = self._settings.retry
        last_line, failures = after_line, 0
        while True:
            request = follow_request(self._http, execution_id, last_line, None)
            try:
                response = await self._http.send(request, stream=True)
            except httpx.TransportError as exc:
                failures += 1
                if failures >= retry.attempts:
                    raise ConnectionFailedError(self.url, reason(exc), failures) from exc
                await asyncio.sleep(retry.delay(failures))
                continue
            try:
                if response.status_code != 200:
                    await response.aread()
                    failures += 1
                    await asyncio.sleep(stream_failure(response, execution_id, failures, retry))
                    continue
                lines = EventLines()
                async for line in response.aiter_lines():
                    event = lines.feed(line)
                    if event is None:
                        continue
                    failures = 0
                    last_line = event.last_line
                    yield event
                    if event.is_final:
                        return
            except httpx.TransportError as exc:
                failures += 1
                if failures >= retry.attempts:
                    raise ConnectionFailedError(self.url, reason(exc), failures) from exc
                await asyncio.sleep(retry.delay(failures))
            finally:
                await response.aclose()

    async def wait(self, execution_id: str) -> ExecutionOut:
        """The execution once it has finished. To wait only so long, wrap it in `asyncio.timeout`."""
        execution = await self.get_execution(execution_id)
        if not execution.status.is_terminal:
            async for event in self.follow(execution_id, after_line=execution.log_count):
                if event.is_final:
                    break
            execution = await self.get_execution(execution_id)
        return execution

    # Health and who is calling.

    async def ready(self) -> Readiness:
        """Whether the server can run executions (`/readyz`), and what fails when it cannot."""
        return await self.send(calls.ready())

    async def session(self) -> SessionOut:
        """Who the key belongs to, and the organization acted for."""
        return await self.send(calls.session())

    # Workflows.

    async def list_workflows(self) -> list[WorkflowInfo]:
        return await self.send(calls.list_workflows())

    async def get_workflow(self, name: str) -> WorkflowInfo:
        return await self.send(calls.get_workflow(name))

    async def workspace_errors(self) -> list[WorkspaceProblemOut]:
        """What keeps files of the workspace from registering their workflows."""
        return await self.send(calls.workspace_errors())

    async def execute(
        self, name: str, parameters: dict[str, Any] | None = None, *, sync: bool | None = None
    ) -> ExecutionOut | ExecutionAccepted:
        """Start a workflow. `sync=None` follows its execution mode; a sync run that finished within the server's
        sync wait comes back as the finished `ExecutionOut`, anything else as `ExecutionAccepted`."""
        return await self.send(calls.execute(name, parameters or {}, sync))

    async def call_endpoint(
        self, name: str, parameters: dict[str, Any] | None = None
    ) -> ExecutionOut | ExecutionAccepted:
        """Call an endpoint-enabled workflow, as `execute` answers."""
        return await self.send(calls.call_endpoint(name, parameters or {}))

    async def get_access(self, name: str) -> AccessOut:
        return await self.send(calls.get_access(name))

    async def set_access(self, name: str, roles: list[OrgRole]) -> AccessOut:
        return await self.send(calls.set_access(name, roles))

    async def clear_access(self, name: str) -> None:
        await self.send(calls.clear_access(name))

    # Executions.

    async def list_executions(
        self,
        *,
        workflow: str | None = None,
        status: ExecutionStatus | None = None,
        org: str | None = None,
        user: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        cursor: str | None = None,
        limit: int | None = None,
    ) -> ExecutionPage:
        """One page, newest first; pass its `next_cursor` as `cursor` for the next."""
        return await self.send(
            calls.list_executions(
                workflow=workflow,
                status=status,
                org=org,
                user=user,
                since=since,
                until=until,
                cursor=cursor,
                limit=limit,
            )
        )

    async def get_execution(self, execution_id: str) -> ExecutionOut:
        return await self.send(calls.get_execution(execution_id))

    async def get_logs(self, execution_id: str, *, after: int = 0, limit: int | None = None) -> LogPage:
        return await self.send(calls.get_logs(execution_id, after, limit))

    async def get_variables(self, execution_id: str) -> VariablesOut:
        return await self.send(calls.get_variables(execution_id))

    async def get_result(self, execution_id: str) -> ResultOut:
        return await self.send(calls.get_result(execution_id))

    async def cancel(self, execution_id: str) -> ExecutionAccepted:
        """Ask a pending or running execution to stop; `ConflictError` when it has finished."""
        return await self.send(calls.cancel(execution_id))

    # The workspace.

    async def list_files(self) -> WorkspaceListing:
        return await self.send(calls.list_files())

    async def read_file(self, path: str) -> bytes:
        return await self.send(calls.read_file(path))

    async def write_file(self, path: str, data: bytes) -> WorkspaceFileOut:
        """Create or replace one file (platform admins)."""
        return await self.send(calls.write_file(path, data))

    async def delete_file(self, path: str) -> None:
        await self.send(calls.delete_file(path))

    async def sync_workspace(self, files: dict[str, str], *, replace_all: bool = True) -> WorkspaceListing:
        """Upload a whole folder (path -> UTF-8 text) as one revision; with `replace_all`, the stored files it does
        not name are deleted (platform admins)."""
        return await self.send(calls.sync_workspace(files, replace_all))

    # API keys.

    async def list_keys(self) -> list[ApiKeyOut]:
        return await self.send(calls.list_keys())

    async def create_key(
        self, name: str, *, expires_at: datetime | None = None, org_id: str | None = None
    ) -> ApiKeyCreated:
        """A personal key; its `key` is shown only this once."""
        return await self.send(calls.create_key(name, expires_at, org_id))

    async def create_service_key(
        self, name: str, *, role: OrgRole = OrgRole.MEMBER, expires_at: datetime | None = None
    ) -> ApiKeyCreated:
        """A key of the organization acted for, held by a new service account (org admins)."""
        return await self.send(calls.create_service_key(name, role, expires_at))

    async def revoke_key(self, key_id: str) -> None:
        await self.send(calls.revoke_key(key_id))

    # Schedules.

    async def list_schedules(self) -> list[ScheduleOut]:
        """The schedules of the organization acted for (org admins); every schedule for platform admins."""
        return await self.send(calls.list_schedules())

    async def get_schedule(self, schedule_id: str) -> ScheduleOut:
        """A schedule with its next five fire times and its last runs."""
        return await self.send(calls.get_schedule(schedule_id))

    async def create_schedule(self, schedule: ScheduleIn, *, global_scope: bool = False) -> ScheduleOut:
        """A schedule of the organization acted for, or a global one (platform admins)."""
        return await self.send(calls.create_schedule(schedule, global_scope))

    async def update_schedule(self, schedule_id: str, changes: SchedulePatch) -> ScheduleOut:
        """Change the fields set in `changes`; the others stay."""
        return await self.send(calls.update_schedule(schedule_id, changes))

    async def enable_schedule(self, schedule_id: str) -> ScheduleOut:
        return await self.update_schedule(schedule_id, SchedulePatch(enabled=True))

    async def disable_schedule(self, schedule_id: str) -> ScheduleOut:
        """Stop its fires; its settings and past runs stay."""
        return await self.update_schedule(schedule_id, SchedulePatch(enabled=False))

    async def delete_schedule(self, schedule_id: str) -> None:
        await self.send(calls.delete_schedule(schedule_id))

    # Secrets and config.

    async def list_secrets(self) -> list[SecretOut]:
        return await self.send(calls.list_secrets())

    async def set_secret(self, name: str, value: str, *, global_scope: bool = False) -> SecretOut:
        return await self.send(calls.set_secret(name, value, global_scope))

    async def delete_secret(self, name: str, *, global_scope: bool = False) -> None:
        await self.send(calls.delete_secret(name, global_scope))

    async def rotate_secrets(self) -> RotationOut:
        return await self.send(calls.rotate_secrets())

    async def list_config(self) -> list[ConfigOut]:
        return await self.send(calls.list_config())

    async def get_config(self, name: str) -> ConfigOut:
        return await self.send(calls.get_config(name))

    async def set_config(self, name: str, value: Any, *, global_scope: bool = False) -> ConfigOut:
        return await self.send(calls.set_config(name, value, global_scope))

    async def delete_config(self, name: str, *, global_scope: bool = False) -> None:
        await self.send(calls.delete_config(name, global_scope))

    # Organizations and users.

    async def list_orgs(self) -> list[OrgOut]:
        return await self.send(calls.list_orgs())

    async def create_org(self, name: str) -> OrgOut:
        return await self.send(calls.create_org(name))

    async def get_org(self, org_id: str) -> OrgOut:
        return await self.send(calls.get_org(org_id))

    async def rename_org(self, org_id: str, name: str) -> OrgOut:
        return await self.send(calls.rename_org(org_id, name))

    async def list_members(self, org_id: str) -> list[MemberOut]:
        return await self.send(calls.list_members(org_id))

    async def set_member(self, org_id: str, user_id: str, role: OrgRole) -> MemberOut:
        return await self.send(calls.set_member(org_id, user_id, role))

    async def remove_member(self, org_id: str, user_id: str) -> None:
        await self.send(calls.remove_member(org_id, user_id))

    async def me(self) -> UserOut:
        return await self.send(calls.me())

    async def list_users(self) -> list[UserOut]:
        return await self.send(calls.list_users())

    async def create_user(self, user: UserIn) -> UserOut:
        return await self.send(calls.create_user(user))

    async def get_user(self, user_id: str) -> UserOut:
        return await self.send(calls.get_user(user_id))

    async def update_user(self, user_id: str, changes: UserPatch) -> UserOut:
        return await self.send(calls.update_user(user_id, changes))

    # The audit log.

    async def audit_events(
        self, *, action: str | None = None, all_orgs: bool = False, before: int | None = None, limit: int | None = None
    ) -> AuditPage:
        """Newest first; pass a page's `next_before` as `before` for the next."""
        return await self.send(calls.audit_events(action, all_orgs, before, limit))
