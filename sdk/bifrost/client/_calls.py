"""Every request of the API as a `Call`: what to send and how to read the answer; every endpoint described once,
in `Endpoints`, which `Client` and `AsyncClient` inherit and send each its own way."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, Self, TypeVar, overload
from urllib.parse import quote

import httpx
from pydantic import BaseModel, TypeAdapter

from bifrost.api.api_keys import ApiKeyCreated, ApiKeyIn, ApiKeyOut, ServiceKeyIn
from bifrost.api.audit import AuditPage
from bifrost.api.config import ConfigIn, ConfigOut
from bifrost.api.executions import (
    ExecuteRequest,
    ExecutionAccepted,
    ExecutionOut,
    ExecutionPage,
    ExecutionStatus,
    LogPage,
    ResultOut,
    VariablesOut,
)
from bifrost.api.health import Readiness
from bifrost.api.orgs import MemberIn, MemberOut, OrgIn, OrgOut, OrgRole
from bifrost.api.schedules import ScheduleIn, ScheduleOut, SchedulePatch
from bifrost.api.secrets import RotationOut, SecretIn, SecretOut
from bifrost.api.sessions import SessionOut
from bifrost.api.users import UserIn, UserOut, UserPatch
from bifrost.api.workflow_access import AccessIn, AccessOut
from bifrost.api.workflows import WorkspaceProblemOut
from bifrost.api.workspace import WorkspaceFileOut, WorkspaceListing, WorkspaceUpload
from bifrost.client.errors import api_error
from bifrost.metadata import WorkflowInfo

if TYPE_CHECKING:
    from bifrost.client._async import AsyncClient
    from bifrost.client._sync import Client

P = ParamSpec("P")
T = TypeVar("T")
Model = TypeVar("Model", bound=BaseModel)

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE"})
"""Requests that may be sent again after a connection broke mid-way: sending them twice does what once does."""


@dataclass(frozen=True)
class Call(Generic[T]):
    method: str
    path: str
    read: Callable[[httpx.Response], T]
    params: dict[str, Any] = field(default_factory=dict)
    json: Any = None
    content: bytes | None = None
    execution_id: str | None = None
    """The execution the call is about, named by the error it may raise."""
    accept: frozenset[int] = frozenset({200})
    """The statuses `read` reads; any other is an error."""

    @property
    def idempotent(self) -> bool:
        return self.method in IDEMPOTENT_METHODS

    def answer(self, response: httpx.Response) -> T:
        """What the response says: the parsed body, or the `ApiError` the server's refusal means."""
        if response.status_code not in self.accept:
            raise api_error(
                response.status_code,
                _body(response),
                method=self.method,
                path=self.path,
                execution_id=self.execution_id,
            )
        return self.read(response)


def _body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text.strip()


@functools.cache
def _adapter(kind: Any) -> TypeAdapter[Any]:
    return TypeAdapter(kind)


def _reader(kind: type[Model]) -> Callable[[httpx.Response], Model]:
    def read(response: httpx.Response) -> Model:
        return kind.model_validate_json(response.content)

    return read


def _list_reader(kind: type[Model]) -> Callable[[httpx.Response], list[Model]]:
    list_of_kind: Any = list[kind]  # type: ignore[valid-type]

    def read(response: httpx.Response) -> list[Model]:
        parsed: list[Model] = _adapter(list_of_kind).validate_json(response.content)
        return parsed

    return read


def _nothing(_response: httpx.Response) -> None:
    return None


def _bytes(response: httpx.Response) -> bytes:
    return response.content


def _started(response: httpx.Response) -> ExecutionOut | ExecutionAccepted:
    if response.status_code == 200:
        return ExecutionOut.model_validate_json(response.content)
    return ExecutionAccepted.model_validate_json(response.content)


def _segment(value: str) -> str:
    """A value as one path segment: `/` and the rest escaped."""
    return quote(value, safe="")


def _dump(model: Any) -> Any:
    return model.model_dump(mode="json", exclude_unset=True)


def _scope(global_scope: bool) -> dict[str, Any]:
    return {"global": "true"} if global_scope else {}


def _query(**values: Any) -> dict[str, Any]:
    """Query parameters, without the unset ones; datetimes as ISO 8601 and booleans as JSON spells them."""
    query: dict[str, Any] = {}
    for name, value in values.items():
        if value is None:
            continue
        if isinstance(value, datetime):
            value = value.isoformat()
        elif isinstance(value, bool):
            value = "true" if value else "false"
        query[name] = value
    return query


class endpoint(Generic[P, T]):
    """An endpoint described once, by the function that makes its `Call`: a method of `Client` that sends the call
    and returns what it answers, and of `AsyncClient` that does the same awaited. Called on its own, it makes the
    call."""

    def __init__(self, build: Callable[P, Call[T]]) -> None:
        self._build = build
        functools.update_wrapper(self, build)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Call[T]:
        return self._build(*args, **kwargs)

    @overload
    def __get__(self, client: None, owner: type[Any]) -> Self: ...

    @overload
    def __get__(self, client: Client, owner: type[Any]) -> Callable[P, T]: ...

    @overload
    def __get__(self, client: AsyncClient, owner: type[Any]) -> Callable[P, Awaitable[T]]: ...

    def __get__(self, client: Client | AsyncClient | None, owner: type[Any]) -> Any:
        if client is None:
            return self
        return client._method(self._build)


class Endpoints:
    """Every endpoint of the API, each described once: what its method takes, what it sends and how it reads the
    answer. `Client` and `AsyncClient` inherit them, each sending the calls its own way."""

    # Health and who is calling.

    @endpoint
    def ready() -> Call[Readiness]:
        """Whether the server can run executions (`/readyz`), and what fails when it cannot."""
        return Call("GET", "/readyz", _reader(Readiness), accept=frozenset({200, 503}))

    @endpoint
    def session() -> Call[SessionOut]:
        """Who the key belongs to, and the organization acted for."""
        return Call("GET", "/api/session", _reader(SessionOut))

    # Workflows.

    @endpoint
    def list_workflows() -> Call[list[WorkflowInfo]]:
        return Call("GET", "/api/workflows", _list_reader(WorkflowInfo))

    @endpoint
    def get_workflow(name: str) -> Call[WorkflowInfo]:
        return Call("GET", f"/api/workflows/{_segment(name)}", _reader(WorkflowInfo))

    @endpoint
    def workspace_errors() -> Call[list[WorkspaceProblemOut]]:
        """What keeps files of the workspace from registering their workflows."""
        return Call("GET", "/api/workspace/errors", _list_reader(WorkspaceProblemOut))

    @endpoint
    def execute(
        name: str, parameters: dict[str, Any] | None = None, *, sync: bool | None = None
    ) -> Call[ExecutionOut | ExecutionAccepted]:
        """Start a workflow. `sync=None` follows its execution mode; a sync run that finished within the server's
        sync wait comes back as the finished `ExecutionOut`, anything else as `ExecutionAccepted`."""
        return Call(
            "POST",
            f"/api/workflows/{_segment(name)}/execute",
            _started,
            params=_query(sync=sync),
            json=_dump(ExecuteRequest(parameters=parameters or {})),
            accept=frozenset({200, 202}),
        )

    @endpoint
    def call_endpoint(name: str, parameters: dict[str, Any] | None = None) -> Call[ExecutionOut | ExecutionAccepted]:
        """Call an endpoint-enabled workflow, as `execute` answers."""
        path = f"/api/endpoints/{_segment(name)}"
        return Call("POST", path, _started, json=parameters or {}, accept=frozenset({200, 202}))

    @endpoint
    def get_access(name: str) -> Call[AccessOut]:
        return Call("GET", f"/api/workflows/{_segment(name)}/access", _reader(AccessOut))

    @endpoint
    def set_access(name: str, roles: list[OrgRole]) -> Call[AccessOut]:
        body = _dump(AccessIn(roles=roles))
        return Call("PUT", f"/api/workflows/{_segment(name)}/access", _reader(AccessOut), json=body)

    @endpoint
    def clear_access(name: str) -> Call[None]:
        return Call("DELETE", f"/api/workflows/{_segment(name)}/access", _nothing, accept=frozenset({204}))

    # Executions.

    @endpoint
    def list_executions(
        *,
        workflow: str | None = None,
        status: ExecutionStatus | None = None,
        org: str | None = None,
        user: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        cursor: str | None = None,
        limit: int | None = None,
    ) -> Call[ExecutionPage]:
        """One page, newest first; pass its `next_cursor` as `cursor` for the next."""
        query = _query(
            workflow=workflow, status=status, org=org, user=user, since=since, until=until, cursor=cursor, limit=limit
        )
        return Call("GET", "/api/executions", _reader(ExecutionPage), params=query)

    @endpoint
    def get_execution(execution_id: str) -> Call[ExecutionOut]:
        path = f"/api/executions/{_segment(execution_id)}"
        return Call("GET", path, _reader(ExecutionOut), execution_id=execution_id)

    @endpoint
    def get_logs(execution_id: str, *, after: int = 0, limit: int | None = None) -> Call[LogPage]:
        path = f"/api/executions/{_segment(execution_id)}/logs"
        query = _query(after=after, limit=limit)
        return Call("GET", path, _reader(LogPage), params=query, execution_id=execution_id)

    @endpoint
    def get_variables(execution_id: str) -> Call[VariablesOut]:
        path = f"/api/executions/{_segment(execution_id)}/variables"
        return Call("GET", path, _reader(VariablesOut), execution_id=execution_id)

    @endpoint
    def get_result(execution_id: str) -> Call[ResultOut]:
        path = f"/api/executions/{_segment(execution_id)}/result"
        return Call("GET", path, _reader(ResultOut), execution_id=execution_id)

    @endpoint
    def cancel(execution_id: str) -> Call[ExecutionAccepted]:
        """Ask a pending or running execution to stop; `ConflictError` when it has finished."""
        path = f"/api/executions/{_segment(execution_id)}/cancel"
        return Call("POST", path, _reader(ExecutionAccepted), execution_id=execution_id, accept=frozenset({202}))

    # The workspace.

    @endpoint
    def list_files() -> Call[WorkspaceListing]:
        return Call("GET", "/api/workspace/files", _reader(WorkspaceListing))

    @endpoint
    def read_file(path: str) -> Call[bytes]:
        return Call("GET", f"/api/workspace/files/{quote(path)}", _bytes)

    @endpoint
    def write_file(path: str, data: bytes) -> Call[WorkspaceFileOut]:
        """Create or replace one file (platform admins)."""
        return Call("PUT", f"/api/workspace/files/{quote(path)}", _reader(WorkspaceFileOut), content=data)

    @endpoint
    def delete_file(path: str) -> Call[None]:
        return Call("DELETE", f"/api/workspace/files/{quote(path)}", _nothing, accept=frozenset({204}))

    @endpoint
    def sync_workspace(files: dict[str, str], *, replace_all: bool = True) -> Call[WorkspaceListing]:
        """Upload a whole folder (path -> UTF-8 text) as one revision; with `replace_all`, the stored files it does
        not name are deleted (platform admins)."""
        body = WorkspaceUpload(files=files, replace_all=replace_all).model_dump(mode="json")
        return Call("POST", "/api/workspace/sync", _reader(WorkspaceListing), json=body)

    # API keys.

    @endpoint
    def list_keys() -> Call[list[ApiKeyOut]]:
        return Call("GET", "/api/keys", _list_reader(ApiKeyOut))

    @endpoint
    def create_key(name: str, *, expires_at: datetime | None = None, org_id: str | None = None) -> Call[ApiKeyCreated]:
        """A personal key; its `key` is shown only this once."""
        body = _dump(ApiKeyIn(name=name, expires_at=expires_at, org_id=org_id))
        return Call("POST", "/api/keys", _reader(ApiKeyCreated), json=body, accept=frozenset({201}))

    @endpoint
    def create_service_key(
        name: str, *, role: OrgRole = OrgRole.MEMBER, expires_at: datetime | None = None
    ) -> Call[ApiKeyCreated]:
        """A key of the organization acted for, held by a new service account (org admins)."""
        body = _dump(ServiceKeyIn(name=name, role=role, expires_at=expires_at))
        return Call("POST", "/api/keys/service", _reader(ApiKeyCreated), json=body, accept=frozenset({201}))

    @endpoint
    def revoke_key(key_id: str) -> Call[None]:
        return Call("DELETE", f"/api/keys/{_segment(key_id)}", _nothing, accept=frozenset({204}))

    # Schedules.

    @endpoint
    def list_schedules() -> Call[list[ScheduleOut]]:
        """The schedules of the organization acted for (org admins); every schedule for platform admins."""
        return Call("GET", "/api/schedules", _list_reader(ScheduleOut))

    @endpoint
    def get_schedule(schedule_id: str) -> Call[ScheduleOut]:
        """A schedule with its next five fire times and its last runs."""
        return Call("GET", f"/api/schedules/{_segment(schedule_id)}", _reader(ScheduleOut))

    @endpoint
    def create_schedule(schedule: ScheduleIn, *, global_scope: bool = False) -> Call[ScheduleOut]:
        """A schedule of the organization acted for, or a global one (platform admins)."""
        body = _dump(schedule)
        params = _scope(global_scope)
        return Call("POST", "/api/schedules", _reader(ScheduleOut), params=params, json=body, accept=frozenset({201}))

    @endpoint
    def update_schedule(schedule_id: str, changes: SchedulePatch) -> Call[ScheduleOut]:
        """Change the fields set in `changes`; the others stay."""
        path = f"/api/schedules/{_segment(schedule_id)}"
        return Call("PATCH", path, _reader(ScheduleOut), json=_dump(changes))

    @endpoint
    def enable_schedule(schedule_id: str) -> Call[ScheduleOut]:
        return Endpoints.update_schedule(schedule_id, SchedulePatch(enabled=True))

    @endpoint
    def disable_schedule(schedule_id: str) -> Call[ScheduleOut]:
        """Stop its fires; its settings and past runs stay."""
        return Endpoints.update_schedule(schedule_id, SchedulePatch(enabled=False))

    @endpoint
    def delete_schedule(schedule_id: str) -> Call[None]:
        return Call("DELETE", f"/api/schedules/{_segment(schedule_id)}", _nothing, accept=frozenset({204}))

    # Secrets and config.

    @endpoint
    def list_secrets() -> Call[list[SecretOut]]:
        return Call("GET", "/api/secrets", _list_reader(SecretOut))

    @endpoint
    def set_secret(name: str, value: str, *, global_scope: bool = False) -> Call[SecretOut]:
        path = f"/api/secrets/{_segment(name)}"
        return Call("PUT", path, _reader(SecretOut), params=_scope(global_scope), json=_dump(SecretIn(value=value)))

    @endpoint
    def delete_secret(name: str, *, global_scope: bool = False) -> Call[None]:
        path = f"/api/secrets/{_segment(name)}"
        return Call("DELETE", path, _nothing, params=_scope(global_scope), accept=frozenset({204}))

    @endpoint
    def rotate_secrets() -> Call[RotationOut]:
        return Call("POST", "/api/secrets/rotate", _reader(RotationOut))

    @endpoint
    def list_config() -> Call[list[ConfigOut]]:
        return Call("GET", "/api/config", _list_reader(ConfigOut))

    @endpoint
    def get_config(name: str) -> Call[ConfigOut]:
        return Call("GET", f"/api/config/{_segment(name)}", _reader(ConfigOut))

    @endpoint
    def set_config(name: str, value: Any, *, global_scope: bool = False) -> Call[ConfigOut]:
        path = f"/api/config/{_segment(name)}"
        body = ConfigIn(value=value).model_dump(mode="json")
        return Call("PUT", path, _reader(ConfigOut), params=_scope(global_scope), json=body)

    @endpoint
    def delete_config(name: str, *, global_scope: bool = False) -> Call[None]:
        path = f"/api/config/{_segment(name)}"
        return Call("DELETE", path, _nothing, params=_scope(global_scope), accept=frozenset({204}))

    # Organizations and users.

    @endpoint
    def list_orgs() -> Call[list[OrgOut]]:
        return Call("GET", "/api/orgs", _list_reader(OrgOut))

    @endpoint
    def create_org(name: str) -> Call[OrgOut]:
        return Call("POST", "/api/orgs", _reader(OrgOut), json=_dump(OrgIn(name=name)), accept=frozenset({201}))

    @endpoint
    def get_org(org_id: str) -> Call[OrgOut]:
        return Call("GET", f"/api/orgs/{_segment(org_id)}", _reader(OrgOut))

    @endpoint
    def rename_org(org_id: str, name: str) -> Call[OrgOut]:
        return Call("PATCH", f"/api/orgs/{_segment(org_id)}", _reader(OrgOut), json=_dump(OrgIn(name=name)))

    @endpoint
    def list_members(org_id: str) -> Call[list[MemberOut]]:
        return Call("GET", f"/api/orgs/{_segment(org_id)}/members", _list_reader(MemberOut))

    @endpoint
    def set_member(org_id: str, user_id: str, role: OrgRole) -> Call[MemberOut]:
        path = f"/api/orgs/{_segment(org_id)}/members/{_segment(user_id)}"
        return Call("PUT", path, _reader(MemberOut), json=_dump(MemberIn(role=role)))

    @endpoint
    def remove_member(org_id: str, user_id: str) -> Call[None]:
        path = f"/api/orgs/{_segment(org_id)}/members/{_segment(user_id)}"
        return Call("DELETE", path, _nothing, accept=frozenset({204}))

    @endpoint
    def me() -> Call[UserOut]:
        return Call("GET", "/api/users/me", _reader(UserOut))

    @endpoint
    def list_users() -> Call[list[UserOut]]:
        return Call("GET", "/api/users", _list_reader(UserOut))

    @endpoint
    def create_user(user: UserIn) -> Call[UserOut]:
        return Call("POST", "/api/users", _reader(UserOut), json=_dump(user), accept=frozenset({201}))

    @endpoint
    def get_user(user_id: str) -> Call[UserOut]:
        return Call("GET", f"/api/users/{_segment(user_id)}", _reader(UserOut))

    @endpoint
    def update_user(user_id: str, changes: UserPatch) -> Call[UserOut]:
        return Call("PATCH", f"/api/users/{_segment(user_id)}", _reader(UserOut), json=_dump(changes))

    # The audit log.

    @endpoint
    def audit_events(
        *, action: str | None = None, all_orgs: bool = False, before: int | None = None, limit: int | None = None
    ) -> Call[AuditPage]:
        """Newest first; pass a page's `next_before` as `before` for the next."""
        query = _query(action=action, all_orgs=all_orgs or None, before=before, limit=limit)
        return Call("GET", "/api/audit", _reader(AuditPage), params=query)


def stream_path(execution_id: str) -> str:
    return f"/api/executions/{_segment(execution_id)}/stream"
