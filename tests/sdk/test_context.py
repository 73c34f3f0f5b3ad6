from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bifrost import ExecutionContext, UserInfo, config, context, secrets, workflow, workflows
from bifrost._internal.schema import bind_arguments
from bifrost.context import NoRuntimeError, use_context


class RecordingServices:
    """The runner's side of the helpers, reduced to answering from dicts and recording sub-workflow calls."""

    def __init__(self) -> None:
        self.runs: list[tuple[str, dict[str, Any], bool]] = []

    async def run_workflow(self, name: str, parameters: dict[str, Any], wait: bool) -> Any:
        self.runs.append((name, parameters, wait))
        return {"ran": name} if wait else "exec-child"

    async def get_secret(self, name: str) -> str | None:
        return {"api_key": "s3cret"}.get(name)

    async def get_config(self, name: str) -> Any:
        return {"region": "eu"}.get(name)


@workflow
async def reads_the_proxy(message: str) -> dict[str, Any]:
    return {
        "execution_id": context.execution_id,
        "workflow_name": context.workflow_name,
        "user": context.user.email,
        "org_id": context.org_id,
        "org_name": context.organization.name,
        "is_platform_admin": context.is_platform_admin,
        "parameters": context.parameters,
        "message": message,
    }


def test_the_context_proxy_reads_the_running_execution(execution_context: ExecutionContext) -> None:
    with use_context(execution_context):
        result = asyncio.run(reads_the_proxy("hi"))
    assert result == {
        "execution_id": "exec-1",
        "workflow_name": "echo",
        "user": "ada@example.com",
        "org_id": "org-1",
        "org_name": "Acme",
        "is_platform_admin": False,
        "parameters": {"message": "hi"},
        "message": "hi",
    }


def test_the_context_proxy_outside_an_execution_says_so() -> None:
    with pytest.raises(NoRuntimeError, match="no Bifrost execution is running"):
        asyncio.run(reads_the_proxy("hi"))
    assert "no execution running" in repr(context)


def test_a_global_execution_has_no_org_id() -> None:
    ctx = ExecutionContext(execution_id="e", workflow_name="w", user=UserInfo(id="u"))
    assert ctx.org_id is None


def test_an_injected_context_is_the_same_object_the_proxy_sees(execution_context: ExecutionContext) -> None:
    @workflow
    async def compare(context: ExecutionContext, n: int) -> bool:
        from bifrost import context as proxy

        return context.execution_id == proxy.execution_id and n == 2

    arguments = bind_arguments(compare, {"n": "2"}, execution_context)
    with use_context(execution_context):
        assert asyncio.run(compare(**arguments)) is True


async def test_concurrent_executions_each_see_their_own_context() -> None:
    async def run(execution_id: str) -> str:
        ctx = ExecutionContext(execution_id=execution_id, workflow_name="w", user=UserInfo(id="u"))
        with use_context(ctx):
            await asyncio.sleep(0)
            return str(context.execution_id)

    assert await asyncio.gather(run("a"), run("b"), run("c")) == ["a", "b", "c"]


async def test_helpers_reach_the_runtime_services(execution_context: ExecutionContext) -> None:
    services = RecordingServices()
    with use_context(execution_context.bind(services)):
        assert await secrets.get("api_key") == "s3cret"
        assert await secrets.get("missing") is None
        assert await config.get("region") == "eu"
        assert await workflows.run("echo", message="hi") == {"ran": "echo"}
        assert await workflows.run("echo", wait=False, message="later") == "exec-child"
        assert await context.get_secret("api_key") == "s3cret"
    assert services.runs == [("echo", {"message": "hi"}, True), ("echo", {"message": "later"}, False)]


async def test_helpers_without_a_runtime_fail_clearly(execution_context: ExecutionContext) -> None:
    with pytest.raises(NoRuntimeError, match="no Bifrost execution is running"):
        await secrets.get("api_key")
    with use_context(execution_context), pytest.raises(NoRuntimeError, match="needs a running Bifrost execution"):
        await workflows.run("echo", message="hi")
