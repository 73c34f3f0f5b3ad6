"""The execution context a workflow receives, and the services behind its helpers.

A runner builds one `ExecutionContext` per execution and installs it with `use_context`; a workflow gets it
injected as a parameter or reads it anywhere through the `context` proxy.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, PrivateAttr


class UserInfo(BaseModel):
    """Who started the execution."""

    id: str
    email: str | None = None
    name: str | None = None


class OrganizationInfo(BaseModel):
    """The organisation the execution runs in."""

    id: str
    name: str


class RuntimeServices(Protocol):
    """What the platform offers a running workflow; the runner provides the implementation."""

    async def run_workflow(self, name: str, parameters: dict[str, Any], wait: bool) -> Any: ...

    async def get_secret(self, name: str) -> str | None: ...

    async def get_config(self, name: str) -> Any: ...


class NoRuntimeError(RuntimeError):
    """A platform helper was used outside a running execution (in a plain unit test, say)."""


class ExecutionContext(BaseModel):
    model_config = ConfigDict(frozen=True)

    execution_id: str
    workflow_name: str
    user: UserInfo
    organization: OrganizationInfo | None = None
    is_platform_admin: bool = False
    parameters: dict[str, Any] = {}
    parent_execution_id: str | None = None

    _services: RuntimeServices | None = PrivateAttr(default=None)

    @property
    def org_id(self) -> str | None:
        return self.organization.id if self.organization else None

    def bind(self, services: RuntimeServices) -> ExecutionContext:
        self._services = services
        return self

    def _require_services(self) -> RuntimeServices:
        if self._services is None:
            raise NoRuntimeError("this helper needs a running Bifrost execution")
        return self._services

    async def get_secret(self, name: str) -> str | None:
        """The value of an org-scoped secret (global fallback), or None when it does not exist."""
        return await self._require_services().get_secret(name)

    async def get_config(self, name: str) -> Any:
        """The value of an org-scoped config entry (global fallback), or None when it does not exist."""
        return await self._require_services().get_config(name)

    async def run_workflow(self, name: str, *, wait: bool = True, **parameters: Any) -> Any:
        """Start a sub-workflow as the same user and org: its result, or its execution id with wait=False."""
        return await self._require_services().run_workflow(name, parameters, wait)


_current: ContextVar[ExecutionContext | None] = ContextVar("bifrost_execution_context", default=None)


def current_context() -> ExecutionContext:
    ctx = _current.get()
    if ctx is None:
        raise NoRuntimeError("no Bifrost execution is running in this context")
    return ctx


@contextlib.contextmanager
def use_context(ctx: ExecutionContext) -> Iterator[ExecutionContext]:
    token = _current.set(ctx)
    try:
        yield ctx
    finally:
        _current.reset(token)


class _ContextProxy:
    """`from bifrost import context` — attribute access goes to the running execution's context."""

    def __getattr__(self, name: str) -> Any:
        return getattr(current_context(), name)

    def __repr__(self) -> str:
        ctx = _current.get()
        return f"<bifrost.context {ctx!r}>" if ctx else "<bifrost.context (no execution running)>"


context: Any = _ContextProxy()


class _WorkflowsHelper:
    """`from bifrost import workflows`; `await workflows.run("name", **params)` inside a workflow."""

    async def run(self, name: str, *, wait: bool = True, **parameters: Any) -> Any:
        return await current_context().run_workflow(name, wait=wait, **parameters)


class _SecretsHelper:
    async def get(self, name: str) -> str | None:
        return await current_context().get_secret(name)


class _ConfigHelper:
    async def get(self, name: str) -> Any:
        return await current_context().get_config(name)


workflows = _WorkflowsHelper()
secrets = _SecretsHelper()
config = _ConfigHelper()
