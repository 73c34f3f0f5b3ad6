from __future__ import annotations

import asyncio
from typing import Any, Literal

import pytest

from bifrost import (
    ExecutionContext,
    Resources,
    RetryPolicy,
    WorkflowDefinitionError,
    data_provider,
    data_provider_info,
    workflow,
    workflow_info,
)


def test_bare_decorator_returns_the_function_with_inferred_metadata() -> None:
    @workflow
    async def create_user(email: str, name: str, department: str = "IT", active: bool = True) -> dict[str, str]:
        """Create a new user in the system.

        More detail that is not part of the description.
        """
        return {"email": email, "department": department}

    info = workflow_info(create_user)
    assert info.name == "create_user"
    assert info.function_name == "create_user"
    assert info.description == "Create a new user in the system."
    assert info.is_async is True
    assert list(info.parameters_schema["properties"]) == ["email", "name", "department", "active"]
    assert info.parameters_schema["required"] == ["email", "name"]
    assert info.execution_mode == "async"
    assert info.timeout_seconds == 1800
    assert info.retries == RetryPolicy(count=0)
    assert info.resources is None, "no resources of its own: the platform's defaults apply"
    assert asyncio.run(create_user("a@example.com", "Ada")) == {"email": "a@example.com", "department": "IT"}


def test_decorator_with_options_on_a_plain_function() -> None:
    @workflow(
        name="export_devices_csv",
        execution_mode="sync",
        category="Reporting",
        schedule="0 9 * * *",
        timeout_seconds=600,
        endpoint_enabled=True,
        tags=["ninjaone"],
        retries={"count": 3, "backoff_seconds": 5},
        max_concurrency=2,
        resources={"cpu_request": "500m", "cpu_limit": "2", "memory_request_mb": 512, "memory_limit_mb": 2048},
    )
    def export(context: ExecutionContext, site: Literal["north", "south"]) -> str:
        return site

    info = workflow_info(export)
    assert (info.name, info.function_name, info.is_async) == ("export_devices_csv", "export", False)
    assert (info.category, info.schedule, info.timeout_seconds, info.tags) == (
        "Reporting",
        "0 9 * * *",
        600,
        ["ninjaone"],
    )
    assert info.endpoint_enabled and info.execution_mode == "sync"
    assert info.retries == RetryPolicy(count=3, backoff_seconds=5)
    assert info.max_concurrency == 2
    assert info.resources == Resources(cpu_request="500m", cpu_limit="2", memory_request_mb=512, memory_limit_mb=2048)
    assert list(info.parameters_schema["properties"]) == ["site"], "the context is not a form field"
    assert export(None, "north") == "north"  # type: ignore[arg-type]


def test_execution_mode_defaults_to_sync_for_endpoints_and_can_be_overridden() -> None:
    def f() -> None: ...

    assert workflow(endpoint_enabled=True)(f).__bifrost_workflow__.execution_mode == "sync"  # type: ignore[attr-defined]
    assert workflow(endpoint_enabled=False)(f).__bifrost_workflow__.execution_mode == "async"  # type: ignore[attr-defined]
    overridden = workflow(endpoint_enabled=True, execution_mode="async")(f)
    assert workflow_info(overridden).execution_mode == "async"


def test_an_integer_retries_option_is_the_retry_count() -> None:
    @workflow(retries=2)
    def f() -> None: ...

    policy = workflow_info(f).retries
    assert policy.count == 2
    assert [policy.delay_before(attempt) for attempt in (1, 2, 3)] == [10.0, 20.0, 40.0]


def test_explicit_description_wins_over_the_docstring() -> None:
    @workflow(description="Short and explicit.")
    def f() -> None:
        """From the docstring."""

    assert workflow_info(f).description == "Short and explicit."


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"nmae": "x"}, "unknown option 'nmae'"),
        ({"timeout_seconds": "600"}, "option 'timeout_seconds'"),
        ({"timeout_seconds": 86401}, "option 'timeout_seconds': Input should be less than or equal to 86400"),
        ({"timeout_seconds": 0}, "option 'timeout_seconds'"),
        ({"schedule": "every day at nine"}, "option 'schedule': not a valid cron expression"),
        ({"schedule": "0 25 * * *"}, "option 'schedule': not a valid cron expression"),
        ({"execution_mode": "later"}, "option 'execution_mode'"),
        ({"tags": "ninjaone"}, "option 'tags'"),
        ({"tags": ["ok", 3]}, "option 'tags.1'"),
        ({"endpoint_enabled": "yes"}, "option 'endpoint_enabled'"),
        ({"retries": {"count": 3, "delay": 1}}, "unknown option 'retries.delay'"),
        ({"retries": -1}, "option 'retries.count'"),
        ({"name": "has spaces"}, "option 'name'"),
        ({"max_concurrency": 0}, "option 'max_concurrency'"),
        ({"resources": {"cpu_request": "2 cores"}}, "option 'resources.cpu_request': not a CPU quantity"),
        ({"resources": {"cpu_limit": "1Gi"}}, "option 'resources.cpu_limit': not a CPU quantity"),
        ({"resources": {"cpu_request": "0m"}}, "option 'resources.cpu_request': a CPU quantity must be at least 1m"),
        ({"resources": {"cpu_request": 2}}, "option 'resources.cpu_request'"),
        ({"resources": {"memory_limit_mb": "512Mi"}}, "option 'resources.memory_limit_mb'"),
        ({"resources": {"memory_request_mb": 8}}, "option 'resources.memory_request_mb'"),
        (
            {"resources": {"cpu_request": "1", "cpu_limit": "500m"}},
            "option 'resources': cpu_limit '500m' is below cpu_request '1'",
        ),
        (
            {"resources": {"memory_request_mb": 1024, "memory_limit_mb": 512}},
            "option 'resources': memory_limit_mb 512 is below memory_request_mb 1024",
        ),
        ({"resources": "large"}, "option 'resources'"),
    ],
)
def test_invalid_options_raise_at_import_naming_the_option(options: dict[str, Any], message: str) -> None:
    def report() -> None: ...

    with pytest.raises(WorkflowDefinitionError, match=r"^@workflow report: ") as caught:
        workflow(**options)(report)
    assert message in str(caught.value)


def test_unknown_option_error_lists_the_valid_ones() -> None:
    with pytest.raises(WorkflowDefinitionError) as caught:
        workflow(shedule="0 9 * * *")(lambda: None)
    assert "unknown option 'shedule'" in str(caught.value)
    assert "schedule" in str(caught.value).split("valid options:")[1]


def test_an_unknown_resource_lists_the_valid_resources() -> None:
    with pytest.raises(WorkflowDefinitionError) as caught:
        workflow(resources={"memory": 512})(lambda: None)
    assert "unknown option 'resources.memory' (valid options: cpu_request, cpu_limit, memory_request_mb, " in str(
        caught.value
    )


def test_resources_may_set_only_some_values_and_a_limit_may_equal_its_request() -> None:
    @workflow(resources={"cpu_request": "0.5", "cpu_limit": "500m", "memory_limit_mb": 4096})
    def f() -> None: ...

    resources = workflow_info(f).resources
    assert resources == Resources(cpu_request="0.5", cpu_limit="500m", memory_limit_mb=4096)
    assert resources is not None and resources.memory_request_mb is None


def test_positional_option_is_rejected_clearly() -> None:
    with pytest.raises(TypeError, match=r"options go by keyword, as in @workflow\(name=...\)"):
        workflow("create_user")  # type: ignore[call-overload]


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ("def f(*items): ...", "parameter 'items' collects extra positional arguments (*args)"),
        ("def f(**extra): ...", "parameter 'extra' collects extra keyword arguments (**kwargs)"),
        ("def f(a, /): ...", "parameter 'a' is positional-only"),
    ],
)
def test_parameters_that_cannot_be_passed_by_name_are_rejected(source: str, problem: str) -> None:
    namespace: dict[str, Any] = {}
    exec(source, namespace)
    with pytest.raises(WorkflowDefinitionError, match=r"^@workflow f: ") as caught:
        workflow(namespace["f"])
    assert problem in str(caught.value)


def test_workflow_info_of_an_undecorated_function_is_a_type_error() -> None:
    def plain() -> None: ...

    with pytest.raises(TypeError, match="'plain' is not decorated with @workflow"):
        workflow_info(plain)


def test_data_provider_bare_and_with_options() -> None:
    @data_provider
    async def sites() -> list[dict[str, str]]:
        """Sites of the org."""
        return [{"label": "North", "value": "north"}]

    @data_provider(
        name="departments", description="Departments of the current org", category="Directory", cache_ttl_seconds=60
    )
    async def departments(context: ExecutionContext, active_only: bool = True) -> list[dict[str, str]]:
        return []

    assert data_provider_info(sites).name == "sites"
    assert data_provider_info(sites).description == "Sites of the org."
    info = data_provider_info(departments)
    assert (info.name, info.cache_ttl_seconds) == ("departments", 60)
    assert (info.description, info.category) == ("Departments of the current org", "Directory")
    assert list(info.parameters_schema["properties"]) == ["active_only"]
    assert asyncio.run(sites()) == [{"label": "North", "value": "north"}]


def test_data_provider_rejects_workflow_only_options() -> None:
    with pytest.raises(WorkflowDefinitionError, match="@data_provider f: unknown option 'schedule'"):

        @data_provider(schedule="0 9 * * *")
        def f() -> None: ...


def test_deferred_descriptions_are_made_when_asked_for_and_equal_the_eager_ones() -> None:
    from bifrost.decorators import WORKFLOW_ATTRIBUTE, descriptions_deferred

    def make() -> tuple[Any, Any]:
        @workflow(name="tagged", tags=["ops"], execution_mode="async")
        def tagged(n: int, label: str = "x") -> int:
            """Tag things."""
            return n

        @data_provider
        def choices() -> list[str]:
            return ["a"]

        return tagged, choices

    eager_workflow, eager_provider = make()
    with descriptions_deferred():
        deferred_workflow, deferred_provider = make()

    assert not hasattr(deferred_workflow, WORKFLOW_ATTRIBUTE)
    assert deferred_workflow(3) == 3
    assert workflow_info(deferred_workflow) == workflow_info(eager_workflow)
    assert data_provider_info(deferred_provider) == data_provider_info(eager_provider)


def test_deferred_invalid_options_raise_when_the_info_is_asked_for() -> None:
    from bifrost.decorators import descriptions_deferred

    with descriptions_deferred():

        @workflow(execution_mode="sometimes")  # type: ignore[call-overload]
        def odd() -> None: ...

    with pytest.raises(WorkflowDefinitionError, match="execution_mode"):
        workflow_info(odd)
