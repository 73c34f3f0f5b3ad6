"""Every request of the API as a `Call`: what to send and how to read the answer. `Client` and `AsyncClient`
send the same calls, each its own way."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar
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


# Health and who is calling.


def ready() -> Call[Readiness]:
    return Call("GET", "/readyz", _reader(Readiness), accept=frozenset({200, 503}))


def session() -> Call[SessionOut]:
    return Call("GET", "/api/session", _reader(SessionOut))


# Workflows.


def list_workflows() -> Call[list[WorkflowInfo]]:
    return Call("GET", "/api/workflows", _list_reader(WorkflowInfo))


def get_workflow(name: str) -> Call[WorkflowInfo]:
    return Call("GET", f"/api/workflows/{_segment(name)}", _reader(WorkflowInfo))


def workspace_errors() -> Call[list[WorkspaceProblemOut]]:
    return Call("GET", "/api/workspace/errors", _list_reader(WorkspaceProblemOut))


def execute(name: str, parameters: dict[str, Any], sync: bool | None) -> Call[ExecutionOut | ExecutionAccepted]:
    return Call(
        "POST",
        f"/api/workflows/{_segment(name)}/execute",
        _started,
        params=_query(sync=sync),
        json=_dump(ExecuteRequest(parameters=parameters)),
        accept=frozenset({200, 202}),
    )


def call_endpoint(name: str, parameters: dict[str, Any]) -> Call[ExecutionOut | ExecutionAccepted]:
    return Call("POST", f"/api/endpoints/{_segment(name)}", _started, json=parameters, accept=frozenset({200, 202}))


def get_access(name: str) -> Call[AccessOut]:
    return Call("GET", f"/api/workflows/{_segment(name)}/access", _reader(AccessOut))


def set_access(name: str, roles: list[OrgRole]) -> Call[AccessOut]:
    body = _dump(AccessIn(roles=roles))
    return Call("PUT", f"/api/workflows/{_segment(name)}/access", _reader(AccessOut), json=body)


def clear_access(name: str) -> Call[None]:
    return Call("DELETE", f"/api/workflows/{_segment(name)}/access", _nothing, accept=frozenset({204}))


# Executions.


def list_executions(
    *,
    workflow: str | None,
    status: ExecutionStatus | None,
    org: str | None,
    user: str | None,
    since: datetime | None,
    until: datetime | None,
    cursor: str | None,
    limit: int | None,
) -> Call[ExecutionPage]:
    query = _query(
        workflow=workflow, status=status, org=org, user=user, since=since, until=until, cursor=cursor, limit=limit
    )
    return Call("GET", "/api/executions", _reader(ExecutionPage), params=query)


def get_execution(execution_id: str) -> Call[ExecutionOut]:
    path = f"/api/executions/{_segment(execution_id)}"
    return Call("GET", path, _reader(ExecutionOut), execution_id=execution_id)


def get_logs(execution_id: str, after: int, limit: int | None) -> Call[LogPage]:
    path = f"/api/executions/{_segment(execution_id)}/logs"
    return Call("GET", path, _reader(LogPage), params=_query(after=after, limit=limit), execution_id=execution_id)


def get_variables(execution_id: str) -> Call[VariablesOut]:
    path = f"/api/executions/{_segment(execution_id)}/variables"
    return Call("GET", path, _reader(VariablesOut), execution_id=execution_id)


def get_result(execution_id: str) -> Call[ResultOut]:
    path = f"/api/executions/{_segment(execution_id)}/result"
    return Call("GET", path, _reader(ResultOut), execution_id=execution_id)


def cancel(execution_id: str) -> Call[ExecutionAccepted]:
    path = f"/api/executions/{_segment(execution_id)}/cancel"
    return Call("POST", path, _reader(ExecutionAccepted), execution_id=execution_id, accept=frozenset({202}))


def stream_path(execution_id: str) -> str:
    return f"/api/executions/{_segment(execution_id)}/stream"


# The workspace.


def list_files() -> Call[WorkspaceListing]:
    return Call("GET", "/api/workspace/files", _reader(WorkspaceListing))


def read_file(path: str) -> Call[bytes]:
    return Call("GET", f"/api/workspace/files/{quote(path)}", _bytes)


def write_file(path: str, data: bytes) -> Call[WorkspaceFileOut]:
    return Call("PUT", f"/api/workspace/files/{quote(path)}", _reader(WorkspaceFileOut), content=data)


def delete_file(path: str) -> Call[None]:
    return Call("DELETE", f"/api/workspace/files/{quote(path)}", _nothing, accept=frozenset({204}))


def sync_workspace(files: dict[str, str], replace_all: bool) -> Call[WorkspaceListing]:
    body = WorkspaceUpload(files=files, replace_all=replace_all).model_dump(mode="json")
    return Call("POST", "/api/workspace/sync", _reader(WorkspaceListing), json=body)


# API keys.


def list_keys() -> Call[list[ApiKeyOut]]:
    return Call("GET", "/api/keys", _list_reader(ApiKeyOut))


def create_key(name: str, expires_at: datetime | None, org_id: str | None) -> Call[ApiKeyCreated]:
    body = _dump(ApiKeyIn(name=name, expires_at=expires_at, org_id=org_id))
    return Call("POST", "/api/keys", _reader(ApiKeyCreated), json=body, accept=frozenset({201}))


def create_service_key(name: str, role: OrgRole, expires_at: datetime | None) -> Call[ApiKeyCreated]:
    body = _dump(ServiceKeyIn(name=name, role=role, expires_at=expires_at))
    return Call("POST", "/api/keys/service", _reader(ApiKeyCreated), json=body, accept=frozenset({201}))


def revoke_key(key_id: str) -> Call[None]:
    return Call("DELETE", f"/api/keys/{_segment(key_id)}", _nothing, accept=frozenset({204}))


# Schedules.


def list_schedules() -> Call[list[ScheduleOut]]:
    return Call("GET", "/api/schedules", _list_reader(ScheduleOut))


def get_schedule(schedule_id: str) -> Call[ScheduleOut]:
    return Call("GET", f"/api/schedules/{_segment(schedule_id)}", _reader(ScheduleOut))


def create_schedule(schedule: ScheduleIn, global_scope: bool) -> Call[ScheduleOut]:
    return Call(
        "POST",
        "/api/schedules",
        _reader(ScheduleOut),
        params=_scope(global_scope),
        json=_dump(schedule),
        accept=frozenset({201}),
    )


def update_schedule(schedule_id: str, changes: SchedulePatch) -> Call[ScheduleOut]:
    return Call("PATCH", f"/api/schedules/{_segment(schedule_id)}", _reader(ScheduleOut), json=_dump(changes))


def delete_schedule(schedule_id: str) -> Call[None]:
    return Call("DELETE", f"/api/schedules/{_segment(schedule_id)}", _nothing, accept=frozenset({204}))


# Secrets and config.


def list_secrets() -> Call[list[SecretOut]]:
    return Call("GET", "/api/secrets", _list_reader(SecretOut))


def set_secret(name: str, value: str, global_scope: bool) -> Call[SecretOut]:
    body = _dump(SecretIn(value=value))
    return Call("PUT", f"/api/secrets/{_segment(name)}", _reader(SecretOut), params=_scope(global_scope), json=body)


def delete_secret(name: str, global_scope: bool) -> Call[None]:
    path = f"/api/secrets/{_segment(name)}"
    return Call("DELETE", path, _nothing, params=_scope(global_scope), accept=frozenset({204}))


def rotate_secrets() -> Call[RotationOut]:
    return Call("POST", "/api/secrets/rotate", _reader(RotationOut))


def list_config() -> Call[list[ConfigOut]]:
    return Call("GET", "/api/config", _list_reader(ConfigOut))


def get_config(name: str) -> Call[ConfigOut]:
    return Call("GET", f"/api/config/{_segment(name)}", _reader(ConfigOut))


def set_config(name: str, value: Any, global_scope: bool) -> Call[ConfigOut]:
    body = ConfigIn(value=value).model_dump(mode="json")
    return Call("PUT", f"/api/config/{_segment(name)}", _reader(ConfigOut), params=_scope(global_scope), json=body)


def delete_config(name: str, global_scope: bool) -> Call[None]:
    path = f"/api/config/{_segment(name)}"
    return Call("DELETE", path, _nothing, params=_scope(global_scope), accept=frozenset({204}))


# Organizations and users.


def list_orgs() -> Call[list[OrgOut]]:
    return Call("GET", "/api/orgs", _list_reader(OrgOut))


def create_org(name: str) -> Call[OrgOut]:
    return Call("POST", "/api/orgs", _reader(OrgOut), json=_dump(OrgIn(name=name)), accept=frozenset({201}))


def get_org(org_id: str) -> Call[OrgOut]:
    return Call("GET", f"/api/orgs/{_segment(org_id)}", _reader(OrgOut))


def rename_org(org_id: str, name: str) -> Call[OrgOut]:
    return Call("PATCH", f"/api/orgs/{_segment(org_id)}", _reader(OrgOut), json=_dump(OrgIn(name=name)))


def list_members(org_id: str) -> Call[list[MemberOut]]:
    return Call("GET", f"/api/orgs/{_segment(org_id)}/members", _list_reader(MemberOut))


def set_member(org_id: str, user_id: str, role: OrgRole) -> Call[MemberOut]:
    path = f"/api/orgs/{_segment(org_id)}/members/{_segment(user_id)}"
    return Call("PUT", path, _reader(MemberOut), json=_dump(MemberIn(role=role)))


def remove_member(org_id: str, user_id: str) -> Call[None]:
    path = f"/api/orgs/{_segment(org_id)}/members/{_segment(user_id)}"
    return Call("DELETE", path, _nothing, accept=frozenset({204}))


def me() -> Call[UserOut]:
    return Call("GET", "/api/users/me", _reader(UserOut))


def list_users() -> Call[list[UserOut]]:
    return Call("GET", "/api/users", _list_reader(UserOut))


def create_user(user: UserIn) -> Call[UserOut]:
    return Call("POST", "/api/users", _reader(UserOut), json=_dump(user), accept=frozenset({201}))


def get_user(user_id: str) -> Call[UserOut]:
    return Call("GET", f"/api/users/{_segment(user_id)}", _reader(UserOut))


def update_user(user_id: str, changes: UserPatch) -> Call[UserOut]:
    return Call("PATCH", f"/api/users/{_segment(user_id)}", _reader(UserOut), json=_dump(changes))


# The audit log.


def audit_events(action: str | None, all_orgs: bool, before: int | None, limit: int | None) -> Call[AuditPage]:
    query = _query(action=action, all_orgs=all_orgs or None, before=before, limit=limit)
    return Call("GET", "/api/audit", _reader(AuditPage), params=query)
