"""The blocking client."""

from __future__ import annotations

import time
from collections.abc import Iterator
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
from bifrost.client.errors import ConnectionFailedError, ExecutionFailedError, WaitTimeoutError
from bifrost.client.profiles import Connection, resolve
from bifrost.metadata import WorkflowInfo

T = TypeVar("T")


class Client:
    """Bifrost's HTTP API, blocking. Use it as a context manager, or `close()` it.

        with Client("https://bifrost.example.com", api_key) as bifrost:
            execution = bifrost.run("create_user", {"email": "a@example.com"}, check=True)

    `org`: the organization to act for (default: the key's). Requests are retried as `retry` says; a refusal
    raises the `ApiError` of its kind, with the server's message."""

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
        self._http = httpx.Client(
            base_url=self._settings.url, headers=self._settings.headers, timeout=self._settings.timeout
        )

    @classmethod
    def connect(cls, *, profile: str | None = None, org: str | None = None, **options: Any) -> Client:
        """A client for the server a profile or the environment names (see `bifrost.client.profiles`)."""
        return cls.of(resolve(profile=profile, org=org), **options)

    @classmethod
    def of(cls, connection: Connection, **options: Any) -> Client:
        return cls(connection.url, connection.api_key, org=connection.org, **options)

    @property
    def url(self) -> str:
        return self._settings.url

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def send(self, call: calls.Call[T]) -> T:
        """Send one call, retrying as the client's `Retry` says."""
        retry = self._settings.retry
        failures = 0
        while True:
            try:
                response = self._http.request(
                    call.method, call.path, params=call.params, json=call.json, content=call.content
                )
            except httpx.TransportError as exc:
                failures += 1
                if failures >= retry.attempts or not (never_sent(exc) or call.idempotent):
                    raise ConnectionFailedError(self.url, reason(exc), failures) from exc
                time.sleep(retry.delay(failures))
                continue
            if response.status_code == 503 and 503 not in call.accept and failures + 1 < retry.attempts:
                failures += 1
                time.sleep(retry.delay(failures, retry_after(response)))
                continue
            return call.answer(response)

    # Health and who is calling.

    def ready(self) -> Readiness:
        """Whether the server can run executions (`/readyz`), and what fails when it cannot."""
        return self.send(calls.ready())

    def session(self) -> SessionOut:
        """Who the key belongs to, and the organization acted for."""
        return self.send(calls.session())

    # Workflows.

    def list_workflows(self) -> list[WorkflowInfo]:
        return self.send(calls.list_workflows())

    def get_workflow(self, name: str) -> WorkflowInfo:
        return self.send(calls.get_workflow(name))

    def workspace_errors(self) -> list[WorkspaceProblemOut]:
        """What keeps files of the workspace from registering their workflows."""
        return self.send(calls.workspace_errors())

    def execute(
        self, name: str, parameters: dict[str, Any] | None = None, *, sync: bool | None = None
    ) -> ExecutionOut | ExecutionAccepted:
        """Start a workflow. `sync=None` follows its execution mode; a sync run that finished within the server's
        sync wait comes back as the finished `ExecutionOut`, anything else as `ExecutionAccepted`."""
        return self.send(calls.execute(name, parameters or {}, sync))

    def call_endpoint(self, name: str, parameters: dict[str, Any] | None = None) -> ExecutionOut | ExecutionAccepted:
        """Call an endpoint-enabled workflow, as `execute` answers."""
        return self.send(calls.call_endpoint(name, parameters or {}))

    def run(
        self,
        name: str,
        parameters: dict[str, Any] | None = None,
        *,
        timeout: float | None = None,
        check: bool = False,
    ) -> ExecutionOut:
        """Start a workflow and wait until it finishes; the finished execution. `check`: raise
        `ExecutionFailedError` unless it succeeded. `WaitTimeoutError` after `timeout` seconds."""
        started = self.execute(name, parameters)
        execution = started if isinstance(started, ExecutionOut) else self.wait(started.execution_id, timeout=timeout)
        if check and execution.status is not ExecutionStatus.SUCCESS:
            raise ExecutionFailedError(execution)
        return execution

    def get_access(self, name: str) -> AccessOut:
        return self.send(calls.get_access(name))

    def set_access(self, name: str, roles: list[OrgRole]) -> AccessOut:
        return self.send(calls.set_access(name, roles))

    def clear_access(self, name: str) -> None:
        self.send(calls.clear_access(name))

    # Executions.

    def list_executions(
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
        return self.send(
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

    def get_execution(self, execution_id: str) -> ExecutionOut:
        return self.send(calls.get_execution(execution_id))

    def get_logs(self, execution_id: str, *, after: int = 0, limit: int | None = None) -> LogPage:
        return self.send(calls.get_logs(execution_id, after, limit))

    def get_variables(self, execution_id: str) -> VariablesOut:
        return self.send(calls.get_variables(execution_id))

    def get_result(self, execution_id: str) -> ResultOut:
        return self.send(calls.get_result(execution_id))

    def cancel(self, execution_id: str) -> ExecutionAccepted:
        """Ask a pending or running execution to stop; `ConflictError` when it has finished."""
        return self.send(calls.cancel(execution_id))

    def follow(self, execution_id: str, *, after_line: int = 0) -> Iterator[StreamEvent]:
        """The execution's events as they happen: the log lines after `after_line`, the variables, the result and
        the status changes, up to the final status. A dropped connection is resumed where it broke, without
        losing or repeating a line."""
        return self._events(execution_id, after_line, None)

    def wait(self, execution_id: str, *, timeout: float | None = None) -> ExecutionOut:
        """The execution once it has finished. `WaitTimeoutError` when it has not after `timeout` seconds
        (checked whenever the stream sends something: at least every 15 seconds, when the server sends a
        keep-alive)."""
        deadline = None if timeout is None else _Deadline(execution_id, timeout)
        execution = self.get_execution(execution_id)
        if not execution.status.is_terminal:
            for event in self._events(execution_id, execution.log_count, deadline):
                if event.is_final:
                    break
            execution = self.get_execution(execution_id)
        return execution

    def _events(self, execution_id: str, after_line: int, deadline: _Deadline | None) -> Iterator[StreamEvent]:
        retry = self._settings.retry
        last_line, failures = after_line, 0
        while True:
            read_timeout = None if deadline is None else deadline.remaining()
            request = follow_request(self._http, execution_id, last_line, read_timeout)
            try:
                response = self._http.send(request, stream=True)
            except httpx.TransportError as exc:
                failures += 1
                if failures >= retry.attempts:
                    raise ConnectionFailedError(self.url, reason(exc), failures) from exc
                time.sleep(retry.delay(failures))
                continue
            try:
                if response.status_code != 200:
                    response.read()
                    failures += 1
                    time.sleep(stream_failure(response, execution_id, failures, retry))
                    continue
                lines = EventLines()
                for line in response.iter_lines():
                    if deadline is not None:
                        deadline.check()
                    event = lines.feed(line)
                    if event is None:
                        continue
                    failures = 0
                    last_line = event.last_line
                    yield event
                    if event.is_final:
                        return
            except httpx.TransportError as exc:
                if deadline is not None:
                    deadline.check()
                failures += 1
                if failures >= retry.attempts:
                    raise ConnectionFailedError(self.url, reason(exc), failures) from exc
                time.sleep(retry.delay(failures))
            finally:
                response.close()
            # The server ended the stream before the final status (it does when a follower falls far behind):
            # resume after the last line.

    # The workspace.

    def list_files(self) -> WorkspaceListing:
        return self.send(calls.list_files())

    def read_file(self, path: str) -> bytes:
        return self.send(calls.read_file(path))

    def write_file(self, path: str, data: bytes) -> WorkspaceFileOut:
        """Create or replace one file (platform admins)."""
        return self.send(calls.write_file(path, data))

    def delete_file(self, path: str) -> None:
        self.send(calls.delete_file(path))

    def sync_workspace(self, files: dict[str, str], *, replace_all: bool = True) -> WorkspaceListing:
        """Upload a whole folder (path -> UTF-8 text) as one revision; with `replace_all`, the stored files it does
        not name are deleted (platform admins)."""
        return self.send(calls.sync_workspace(files, replace_all))

    # API keys.

    def list_keys(self) -> list[ApiKeyOut]:
        return self.send(calls.list_keys())

    def create_key(self, name: str, *, expires_at: datetime | None = None, org_id: str | None = None) -> ApiKeyCreated:
        """A personal key; its `key` is shown only this once."""
        return self.send(calls.create_key(name, expires_at, org_id))

    def create_service_key(
        self, name: str, *, role: OrgRole = OrgRole.MEMBER, expires_at: datetime | None = None
    ) -> ApiKeyCreated:
        """A key of the organization acted for, held by a new service account (org admins)."""
        return self.send(calls.create_service_key(name, role, expires_at))

    def revoke_key(self, key_id: str) -> None:
        self.send(calls.revoke_key(key_id))

    # Schedules.

    def list_schedules(self) -> list[ScheduleOut]:
        """The schedules of the organization acted for (org admins); every schedule for platform admins."""
        return self.send(calls.list_schedules())

    def get_schedule(self, schedule_id: str) -> ScheduleOut:
        """A schedule with its next five fire times and its last runs."""
        return self.send(calls.get_schedule(schedule_id))

    def create_schedule(self, schedule: ScheduleIn, *, global_scope: bool = False) -> ScheduleOut:
        """A schedule of the organization acted for, or a global one (platform admins)."""
        return self.send(calls.create_schedule(schedule, global_scope))

    def update_schedule(self, schedule_id: str, changes: SchedulePatch) -> ScheduleOut:
        """Change the fields set in `changes`; the others stay."""
        return self.send(calls.update_schedule(schedule_id, changes))

    def enable_schedule(self, schedule_id: str) -> ScheduleOut:
        return self.update_schedule(schedule_id, SchedulePatch(enabled=True))

    def disable_schedule(self, schedule_id: str) -> ScheduleOut:
        """Stop its fires; its settings and past runs stay."""
        return self.update_schedule(schedule_id, SchedulePatch(enabled=False))

    def delete_schedule(self, schedule_id: str) -> None:
        self.send(calls.delete_schedule(schedule_id))

    # Secrets and config.

    def list_secrets(self) -> list[SecretOut]:
        return self.send(calls.list_secrets())

    def set_secret(self, name: str, value: str, *, global_scope: bool = False) -> SecretOut:
        return self.send(calls.set_secret(name, value, global_scope))

    def delete_secret(self, name: str, *, global_scope: bool = False) -> None:
        self.send(calls.delete_secret(name, global_scope))

    def rotate_secrets(self) -> RotationOut:
        return self.send(calls.rotate_secrets())

    def list_config(self) -> list[ConfigOut]:
        return self.send(calls.list_config())

    def get_config(self, name: str) -> ConfigOut:
        return self.send(calls.get_config(name))

    def set_config(self, name: str, value: Any, *, global_scope: bool = False) -> ConfigOut:
        return self.send(calls.set_config(name, value, global_scope))

    def delete_config(self, name: str, *, global_scope: bool = False) -> None:
        self.send(calls.delete_config(name, global_scope))

    # Organizations and users.

    def list_orgs(self) -> list[OrgOut]:
        return self.send(calls.list_orgs())

    def create_org(self, name: str) -> OrgOut:
        return self.send(calls.create_org(name))

    def get_org(self, org_id: str) -> OrgOut:
        return self.send(calls.get_org(org_id))

    def rename_org(self, org_id: str, name: str) -> OrgOut:
        return self.send(calls.rename_org(org_id, name))

    def list_members(self, org_id: str) -> list[MemberOut]:
        return self.send(calls.list_members(org_id))

    def set_member(self, org_id: str, user_id: str, role: OrgRole) -> MemberOut:
        return self.send(calls.set_member(org_id, user_id, role))

    def remove_member(self, org_id: str, user_id: str) -> None:
        self.send(calls.remove_member(org_id, user_id))

    def me(self) -> UserOut:
        return self.send(calls.me())

    def list_users(self) -> list[UserOut]:
        return self.send(calls.list_users())

    def create_user(self, user: UserIn) -> UserOut:
        return self.send(calls.create_user(user))

    def get_user(self, user_id: str) -> UserOut:
        return self.send(calls.get_user(user_id))

    def update_user(self, user_id: str, changes: UserPatch) -> UserOut:
        return self.send(calls.update_user(user_id, changes))

    # The audit log.

    def audit_events(
        self, *, action: str | None = None, all_orgs: bool = False, before: int | None = None, limit: int | None = None
    ) -> AuditPage:
        """Newest first; pass a page's `next_before` as `before` for the next."""
        return self.send(calls.audit_events(action, all_orgs, before, limit))


class _Deadline:
    """When `wait` stops waiting."""

    def __init__(self, execution_id: str, seconds: float) -> None:
        self._execution_id = execution_id
        self._seconds = seconds
        self._at = time.monotonic() + seconds

    def remaining(self) -> float:
        self.check()
        return self._at - time.monotonic()

    def check(self) -> None:
        if time.monotonic() >= self._at:
            raise WaitTimeoutError(self._execution_id, self._seconds)
