from __future__ import annotations

import json
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from bifrost import Resources, WorkflowDefinitionError, data_provider_info, workflow_info
from bifrost._internal.discovery import Discovery, combine, discover_source, discover_workspace
from bifrost.forms import form_field_values
from bifrost.metadata import DataProviderInfo, WorkflowInfo
from tests.sdk.conftest import WORKSPACE, Importer


def write(root: Path, files: dict[str, str]) -> Path:
    for name, source in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
    return root


def imported_info(importer: Importer, info: WorkflowInfo | DataProviderInfo) -> WorkflowInfo | DataProviderInfo:
    func = getattr(importer(info.file), info.function_name)
    return workflow_info(func) if isinstance(info, WorkflowInfo) else data_provider_info(func)


def assert_discovery_matches_import(discovery: Discovery, importer: Importer) -> None:
    for info in [*discovery.workflows, *discovery.data_providers]:
        assert imported_info(importer, info) == info, f"{info.file}:{info.function_name} differs"


def test_example_workspace_static_discovery_equals_the_decorators(
    import_from: Callable[[Path], Importer],
) -> None:
    discovery = discover_workspace(WORKSPACE)
    assert discovery.errors == [] and discovery.conflicts == []
    names = {info.name for info in discovery.workflows}
    assert {
        "echo", "sleep_for", "log_lines", "fail_on_purpose", "soft_failure", "parent_calls_child", "sync_echo",
        "blocking_sleep", "create_user", "assign_manager", "offboard_user", "export_devices_csv",
        "daily_device_summary",
    } <= names
    assert {info.name for info in discovery.data_providers} == {"departments", "licence_skus", "managers"}
    assert all(info.warnings == [] for info in discovery.workflows)
    assert_discovery_matches_import(discovery, import_from(WORKSPACE))


def test_example_workspace_testing_workflows_keep_their_contract() -> None:
    discovery = discover_workspace(WORKSPACE)
    by_name = {info.name: info for info in discovery.workflows}
    echo = by_name["echo"]
    assert (echo.file, echo.category, echo.is_async) == ("examples/testing.py", "Testing", True)
    assert echo.parameters_schema["required"] == ["message"]
    assert echo.parameters_schema["properties"]["count"]["default"] == 1
    assert (by_name["sync_echo"].execution_mode, by_name["sync_echo"].endpoint_enabled) == ("sync", True)
    assert by_name["blocking_sleep"].is_async is False
    assert by_name["daily_device_summary"].schedule == "0 9 * * 1-5"


def test_every_import_style_of_the_decorators_is_recognised(
    tmp_path: Path, import_from: Callable[[Path], Importer]
) -> None:
    root = write(
        tmp_path,
        {
            "bare.py": """
                from bifrost import workflow

                @workflow
                async def bare(x: int): ...
            """,
            "called.py": """
                from bifrost import workflow

                @workflow(name="called_renamed", timeout_seconds=60)
                def called(): ...
            """,
            "module_attr.py": """
                import bifrost

                @bifrost.workflow
                def via_module(): ...

                @bifrost.data_provider(name="via_module_provider")
                def provider(): ...
            """,
            "aliased.py": """
                import bifrost as bf
                from bifrost import workflow as wf, data_provider as dp

                @wf(category="Aliased")
                def via_alias(): ...

                @bf.workflow()
                def via_module_alias(): ...

                @dp
                def aliased_provider(): ...
            """,
            "star.py": """
                from bifrost import *

                @workflow
                def via_star(): ...
            """,
            "ops/nested/deep.py": """
                from bifrost.decorators import workflow

                @workflow
                def in_a_plain_folder(): ...
            """,
            "pkg/__init__.py": """
                from bifrost import workflow

                @workflow
                def in_package_init(): ...
            """,
            "pkg/sub/mod.py": """
                from bifrost import workflow

                @workflow
                def in_a_package(): ...
            """,
            "pkg/sub/__init__.py": "",
        },
    )
    discovery = discover_workspace(root)
    assert discovery.errors == []
    found = {info.name: info.file for info in discovery.workflows}
    assert found == {
        "bare": "bare.py",
        "called_renamed": "called.py",
        "via_module": "module_attr.py",
        "via_alias": "aliased.py",
        "via_module_alias": "aliased.py",
        "via_star": "star.py",
        "in_a_plain_folder": "ops/nested/deep.py",
        "in_package_init": "pkg/__init__.py",
        "in_a_package": "pkg/sub/mod.py",
    }
    assert {info.name for info in discovery.data_providers} == {"via_module_provider", "aliased_provider"}
    assert_discovery_matches_import(discovery, import_from(root))


def test_functions_not_decorated_by_bifrost_are_ignored() -> None:
    source = """
        import functools
        from bifrost import workflow as bifrost_workflow
        from prefect import flow as workflow

        def helper(): ...

        @functools.cache
        def cached(): ...

        @workflow
        def not_ours(): ...

        class Tools:
            @bifrost_workflow
            def method(self): ...

        def outer():
            @bifrost_workflow
            def inner(): ...
    """
    result = discover_source("mixed.py", textwrap.dedent(source))
    assert result.workflows == [] and result.errors == []


def test_a_file_that_never_mentions_bifrost_is_skipped() -> None:
    assert discover_source("plain.py", "def f(:\n") == discover_source("plain.py", "")


def test_syntax_error_is_an_error_entry_and_the_rest_is_still_discovered(tmp_path: Path) -> None:
    root = write(
        tmp_path,
        {
            "good.py": "from bifrost import workflow\n\n@workflow\ndef good(): ...\n",
            "broken.py": "from bifrost import workflow\n\n@workflow\ndef broken(:\n    pass\n",
        },
    )
    discovery = discover_workspace(root)
    assert [info.name for info in discovery.workflows] == ["good"]
    [error] = discovery.errors
    assert (error.file, error.line) == ("broken.py", 4)
    assert error.message.startswith("syntax error: ")


def test_invalid_options_are_error_entries_with_file_and_line(tmp_path: Path) -> None:
    source = """
        from bifrost import workflow

        TIMEOUT = 120

        @workflow(schedule="61 * * * *")
        def bad_cron(): ...

        @workflow(timeout_seconds=TIMEOUT)
        def constant_option(): ...

        @workflow(timeout_seconds=compute())
        def computed_option(): ...

        @workflow(colour="red")
        def unknown_option(): ...

        @workflow("positional")
        def positional(): ...

        @workflow
        def varargs(*items): ...

        @workflow(tags="one")
        def fine_after_errors(): ...
    """
    result = discover_source("flows/bad.py", textwrap.dedent(source))
    assert [info.name for info in result.workflows] == ["constant_option"]
    assert result.workflows[0].timeout_seconds == 120
    messages = {error.line: error.message for error in result.errors}
    assert all(error.file == "flows/bad.py" for error in result.errors)
    assert messages[6].startswith("@workflow bad_cron: option 'schedule': not a valid cron expression")
    assert messages[12] == (
        "@workflow computed_option: option 'timeout_seconds' must be a literal value (a string, number, list or "
        "dict, or a module-level constant holding one), not compute()"
    )
    assert messages[15].startswith("@workflow unknown_option: unknown option 'colour'")
    assert messages[18] == "@workflow positional: options go by keyword, as in @workflow(name=...)"
    assert "parameter 'items' collects extra positional arguments (*args)" in messages[21]
    assert messages[24].startswith("@workflow fine_after_errors: option 'tags'")


def test_invalid_options_give_the_same_message_at_import_and_at_discovery(
    tmp_path: Path, import_from: Callable[[Path], Importer]
) -> None:
    source = 'from bifrost import workflow\n\n@workflow(timeout_seconds=90000, nmae="x")\ndef f(): ...\n'
    [error] = discover_source("bad_options.py", source).errors
    write(tmp_path, {"bad_options.py": source})
    with pytest.raises(ValueError) as caught:
        import_from(tmp_path)("bad_options.py")
    assert str(caught.value) == error.message


def test_resources_are_read_without_importing_exactly_as_the_decorator_reads_them(
    tmp_path: Path, import_from: Callable[[Path], Importer]
) -> None:
    root = write(
        tmp_path,
        {
            "heavy.py": """
                import bifrost

                LARGE = {"cpu_request": "1", "cpu_limit": "4", "memory_request_mb": 2048, "memory_limit_mb": 8192}

                @bifrost.workflow(resources={"cpu_request": "250m", "memory_limit_mb": 512})
                def small_job(): ...

                @bifrost.workflow(resources=LARGE)
                def large_job(): ...

                @bifrost.workflow(resources={})
                def empty_resources(): ...

                @bifrost.workflow
                def default_resources(): ...
            """,
        },
    )
    discovery = discover_workspace(root)
    assert discovery.errors == []
    by_name = {info.name: info for info in discovery.workflows}
    assert by_name["small_job"].resources == Resources(cpu_request="250m", memory_limit_mb=512)
    assert by_name["large_job"].resources == Resources(
        cpu_request="1", cpu_limit="4", memory_request_mb=2048, memory_limit_mb=8192
    )
    assert by_name["empty_resources"].resources == Resources()
    assert by_name["default_resources"].resources is None
    assert_discovery_matches_import(discovery, import_from(root))


@pytest.mark.parametrize(
    "resources",
    [
        '{"cpu_limit": "two"}',
        '{"cpu_request": "2", "cpu_limit": "1"}',
        '{"memory_request_mb": 4096, "memory_limit_mb": 1024}',
        '{"gpu": 1}',
    ],
)
def test_bad_resources_give_the_same_error_at_import_and_at_discovery(
    tmp_path: Path, import_from: Callable[[Path], Importer], resources: str
) -> None:
    source = f"from bifrost import workflow\n\n@workflow(resources={resources})\ndef f(): ...\n"
    [error] = discover_source("bad_resources.py", source).errors
    assert error.line == 3
    assert error.message.startswith("@workflow f: ") and "'resources" in error.message
    write(tmp_path, {"bad_resources.py": source})
    with pytest.raises(WorkflowDefinitionError) as caught:
        import_from(tmp_path)("bad_resources.py")
    assert str(caught.value) == error.message


def test_duplicate_names_are_a_conflict_not_merged(tmp_path: Path) -> None:
    root = write(
        tmp_path,
        {
            "a.py": "from bifrost import workflow\n\n@workflow\ndef sync_users(): ...\n",
            "b/c.py": "from bifrost import workflow\n\n\n@workflow(name='sync_users')\ndef other(): ...\n",
            "d.py": "from bifrost import data_provider\n\n@data_provider(name='sync_users')\ndef p(): ...\n",
            "e.py": "from bifrost import workflow\n\n@workflow\ndef unique(): ...\n",
        },
    )
    discovery = discover_workspace(root)
    assert [info.name for info in discovery.workflows] == ["unique"]
    assert discovery.data_providers == []
    [conflict] = discovery.conflicts
    assert conflict.name == "sync_users"
    assert [(place.kind, place.file, place.line, place.function_name) for place in conflict.places] == [
        ("workflow", "a.py", 3, "sync_users"),
        ("workflow", "b/c.py", 4, "other"),
        ("data_provider", "d.py", 3, "p"),
    ]


def test_types_defined_in_the_file_are_rebuilt_without_importing(
    tmp_path: Path, import_from: Callable[[Path], Importer]
) -> None:
    source = '''
        from __future__ import annotations

        import datetime as dt
        import enum
        import typing as t
        import uuid
        from decimal import Decimal
        from typing import Annotated, Literal, Optional, Union

        from pydantic import BaseModel, ConfigDict, Field

        from bifrost import ExecutionContext, workflow

        DEFAULT_SITE = "north"


        class Colour(str, enum.Enum):
            RED = "red"
            GREEN = "green"


        class Level(enum.IntEnum):
            """Escalation level."""

            ONE = enum.auto()
            TWO = enum.auto()


        class Contact(BaseModel):
            """A person to notify."""

            model_config = ConfigDict(extra="forbid")
            kind: t.ClassVar[str] = "contact"

            email: str = Field(description="Where to write.", max_length=200)
            phone: Optional[str] = None
            tags: list[str] = Field(default_factory=list)
            added: dt.datetime = Field(default_factory=dt.datetime.now)


        class Escalation(Contact):
            level: Level = Level.ONE
            backup: Contact | None = None


        @workflow
        def everything(
            ctx: ExecutionContext,
            site: Literal["north", "south"] = DEFAULT_SITE,
            colour: Colour = Colour.GREEN,
            when: dt.date | None = None,
            ident: Optional[uuid.UUID] = None,
            amount: Decimal = Decimal("1.5"),
            contacts: t.List[Contact] = [],
            escalation: "Escalation | None" = None,
            limits: dict[str, Union[int, float]] = {"cpu": 2},
            note: Annotated[str, Field(description="Free text.", min_length=1)] = "n/a",
            window: t.Tuple[int, int] = (1, 2),
        ):
            """Every kind of annotation at once.

            Args:
                site: Where.
                colour: Which colour.
            """
    '''
    write(tmp_path, {"kinds_of_types.py": source})
    discovery = discover_workspace(tmp_path)
    assert discovery.errors == []
    [info] = discovery.workflows
    assert info.warnings == []
    assert set(info.parameters_schema["$defs"]) == {"Colour", "Level", "Contact", "Escalation"}
    assert "amount" not in info.parameters_schema["required"]
    assert "default" not in info.parameters_schema["properties"]["amount"], "a call's value is known at import only"
    live = imported_info(import_from(tmp_path), info)
    live_schema = json.loads(json.dumps(live.parameters_schema))
    live_schema["properties"]["amount"].pop("default")
    assert json.dumps(info.parameters_schema, indent=1) == json.dumps(live_schema, indent=1)


def test_an_annotation_written_alike_in_two_files_means_what_each_file_says(
    tmp_path: Path, import_from: Callable[[Path], Importer]
) -> None:
    shared = textwrap.dedent("""
        from typing import Annotated, Literal

        from pydantic import Field

        from bifrost import workflow
        {definitions}

        @workflow
        async def {name}(
            colours: list[Colour],
            size: Annotated[int, Field(ge=LOWEST)] = 5,
            quoted: "list[int]" = [],
            other: "list[str]" = [],
        ): ...
    """)
    write(
        tmp_path,
        {
            "warm.py": shared.format(
                name="warm",
                definitions='import enum\nLOWEST = 1\nclass Colour(str, enum.Enum):\n    RED = "red"\n',
            ),
            "cold.py": shared.format(
                name="cold",
                definitions='import enum\nLOWEST = 2\nclass Colour(str, enum.Enum):\n    BLUE = "blue"\n',
            ),
        },
    )
    discovery = discover_workspace(tmp_path)
    assert discovery.errors == []
    schemas = {info.name: info.parameters_schema for info in discovery.workflows}
    assert schemas["warm"]["$defs"]["Colour"]["enum"] == ["red"]
    assert schemas["cold"]["$defs"]["Colour"]["enum"] == ["blue"]
    assert schemas["warm"]["properties"]["size"]["minimum"] == 1
    assert schemas["cold"]["properties"]["size"]["minimum"] == 2
    for schema in schemas.values():
        assert schema["properties"]["quoted"]["items"] == {"type": "integer"}
        assert schema["properties"]["other"]["items"] == {"type": "string"}
    assert_discovery_matches_import(discovery, import_from(tmp_path))


def test_types_the_file_imports_from_elsewhere_become_any_with_a_warning() -> None:
    source = """
        from bifrost import workflow
        from mycompany.models import Ticket

        @workflow
        def triage(ticket: Ticket, tickets: list[Ticket], count: int = 3): ...
    """
    [info] = discover_source("triage.py", textwrap.dedent(source)).workflows
    assert info.parameters_schema["properties"]["ticket"] == {"title": "Ticket"}
    assert info.parameters_schema["properties"]["count"]["type"] == "integer"
    assert info.warnings == [
        "parameter 'ticket': type Ticket cannot be described as a form field; it accepts any value",
        "parameter 'tickets': type list[Ticket] cannot be described as a form field; it accepts any value",
    ]


def test_context_parameters_are_not_form_fields() -> None:
    source = """
        import bifrost
        from bifrost import ExecutionContext, data_provider, workflow

        @workflow
        async def by_name(context, x: int): ...

        @workflow
        async def by_annotation(run: ExecutionContext, x: int): ...

        @workflow
        async def by_module_annotation(run: bifrost.ExecutionContext, x: int): ...

        @data_provider
        async def provider(context): ...
    """
    result = discover_source("ctx.py", textwrap.dedent(source))
    assert [list(info.parameters_schema["properties"]) for info in result.workflows] == [["x"], ["x"], ["x"]]
    assert result.data_providers[0].parameters_schema["properties"] == {}


def test_hidden_folders_and_caches_are_not_scanned(tmp_path: Path) -> None:
    flow = "from bifrost import workflow\n\n@workflow\ndef {name}(): ...\n"
    root = write(
        tmp_path,
        {
            "visible.py": flow.format(name="visible"),
            ".venv/lib/hidden.py": flow.format(name="hidden"),
            "__pycache__/cached.py": flow.format(name="cached"),
            "notes.txt": flow.format(name="not_python"),
        },
    )
    discovery = discover_workspace(root)
    assert [info.name for info in discovery.workflows] == ["visible"]
    assert discovery.files_scanned == 1


def test_undecodable_file_is_an_error_entry(tmp_path: Path) -> None:
    (tmp_path / "latin1.py").write_bytes(b"# caf\xe9\nfrom bifrost import workflow\n")
    [error] = discover_workspace(tmp_path).errors
    assert error.file == "latin1.py" and "utf-8" in error.message


def test_missing_workspace_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(NotADirectoryError, match="does-not-exist"):
        discover_workspace(tmp_path / "does-not-exist")


def test_incremental_rediscovery_of_one_changed_file() -> None:
    unchanged = discover_source("a.py", "from bifrost import workflow\n\n@workflow\ndef one(): ...\n")
    before = discover_source("b.py", "from bifrost import workflow\n\n@workflow\ndef two(): ...\n")
    after = discover_source("b.py", "from bifrost import workflow\n\n@workflow(name='one')\ndef two(): ...\n")
    assert [info.name for info in combine([unchanged, before]).workflows] == ["one", "two"]
    assert [conflict.name for conflict in combine([unchanged, after]).conflicts] == ["one"]


def test_discovery_is_json_serialisable_and_round_trips() -> None:
    discovery = discover_workspace(WORKSPACE)
    assert Discovery.model_validate_json(discovery.model_dump_json()) == discovery


def test_form_field_values_are_the_form_fields_as_json() -> None:
    discovery = discover_workspace(WORKSPACE)
    infos = [*discovery.workflows, *discovery.data_providers]
    assert any(info.form_fields for info in infos)
    for info in infos:
        expected = [field.model_dump(mode="json") for field in info.form_fields]
        assert json.dumps(form_field_values(info.parameters_schema)) == json.dumps(expected)
