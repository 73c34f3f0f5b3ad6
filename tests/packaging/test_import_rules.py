"""Which part of Bifrost may import which, read from the source of every module (docs/architecture.md).

An import counts wherever it is written: at module level, in a class body, or in a function (a lazy import still
ties the parts together). An import that only runs for the type checker (`if TYPE_CHECKING:`) binds nothing at
run time, and so only counts towards the part rules, not towards what must be installed. A module found by name
at run time (`importlib.util.find_spec("bifrost_runner")`) is not imported, and is not read here.
"""

from __future__ import annotations

import ast
import importlib.metadata
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO_ROOT = Path(__file__).resolve().parents[2]

# Where each import package's source is, and its part.
PACKAGES = {
    "bifrost": REPO_ROOT / "sdk" / "bifrost",
    "bifrost_cli": REPO_ROOT / "cli" / "bifrost_cli",
    "bifrost_runner": REPO_ROOT / "runner_image" / "bifrost_runner",
    "control_plane": REPO_ROOT / "control_plane",
    "bifrost_devtools": REPO_ROOT / "devtools" / "bifrost_devtools",
}
SHIPPED = ("bifrost", "bifrost_cli", "bifrost_runner", "control_plane")
INTERNAL = "bifrost._internal"
# The SDK's halves beside its face: the HTTP API's bodies (which the control plane answers with and the client
# reads) and the HTTP client, whose `client` extra brings httpx. Authors need neither.
API_MODELS = "bifrost.api"
CLIENT = "bifrost.client"
# The workspace-sync code: what brings a recorded revision of the workspace from its storage into a runner's
# cache and checks it out for a run. Runners alone do this; the control plane writes revisions and reads the
# workspace as text, never through it.
WORKSPACE_SYNC = ("bifrost_runner.sync", "bifrost_runner.workspace_source", "bifrost_runner.checkout")
# Folders of the repository whose code is not part of a package: tests and benchmarks of every part (which may
# import any part), and the example workspace (workflow code, which sees what authors see).
LOOSE_FOLDERS = ("tests", "bench", "workspace")
# A workspace with syntax errors on purpose.
UNPARSABLE = REPO_ROOT / "tests" / "fixtures" / "broken_workspace"


@dataclass(frozen=True)
class Import:
    importer: str
    path: Path
    line: int
    module: str
    lazy: bool
    """Written in a function: runs when the function is called, not when the importer is imported."""
    typing_only: bool
    """Under `if TYPE_CHECKING:`: never runs."""

    def __str__(self) -> str:
        return f"{self.path.relative_to(REPO_ROOT)}:{self.line} imports {self.module}"


def is_under(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def imports_of(source: str, importer: str, path: Path, *, is_package: bool) -> list[Import]:
    """Every module `importer` imports: `from a import b` imports `a`, and `a.b` where b is a submodule."""
    found: list[Import] = []

    def walk(nodes: list[ast.AST], lazy: bool, typing_only: bool) -> None:
        for node in nodes:
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _absolute(node, importer, is_package)
                modules = [base, *(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")]
            elif isinstance(node, ast.If) and _is_type_checking(node.test):
                walk(list(node.body), lazy, True)
                walk(list(node.orelse), lazy, typing_only)
                continue
            else:
                function = isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
                walk(list(ast.iter_child_nodes(node)), lazy or function, typing_only)
                continue
            found.extend(Import(importer, path, node.lineno, module, lazy, typing_only) for module in modules)

    walk([ast.parse(source, filename=str(path))], False, False)
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _absolute(node: ast.ImportFrom, importer: str, is_package: bool) -> str:
    if node.level == 0:
        return node.module or ""
    parts = importer.split(".")
    if not is_package:
        parts = parts[:-1]
    parts = parts[: len(parts) - (node.level - 1)]
    return ".".join([*parts, node.module] if node.module else parts)


def _modules() -> Iterator[tuple[str, Path, bool]]:
    for package, folder in PACKAGES.items():
        for path in sorted(folder.rglob("*.py")):
            relative = path.relative_to(folder).with_suffix("").parts
            is_package = relative[-1] == "__init__"
            yield ".".join((package, *(relative[:-1] if is_package else relative))), path, is_package
    for name in LOOSE_FOLDERS:
        for path in sorted((REPO_ROOT / name).rglob("*.py")):
            if not path.is_relative_to(UNPARSABLE):
                yield ".".join(path.relative_to(REPO_ROOT).with_suffix("").parts), path, path.stem == "__init__"


def _all_imports() -> list[Import]:
    found: list[Import] = []
    for module, path, is_package in _modules():
        found += imports_of(path.read_text(), module, path, is_package=is_package)
    return found


ALL_IMPORTS = _all_imports()


def imports_by(package: str) -> list[Import]:
    return [found for found in ALL_IMPORTS if is_under(found.importer, package)]


def offending(found: list[Import]) -> list[str]:
    return sorted({str(each) for each in found})


def installed_with(distribution: str, extras: frozenset[str] = frozenset()) -> set[str]:
    """The distributions installing `distribution` (with `extras`) brings: itself and what it requires, at any
    depth, as their requirements and markers say for this interpreter."""
    seen: set[tuple[str, frozenset[str]]] = set()
    pending = [(canonicalize_name(distribution), extras)]
    while pending:
        name, wanted = pending.pop()
        if (name, wanted) in seen:
            continue
        seen.add((name, wanted))
        for line in importlib.metadata.requires(name) or []:
            requirement = Requirement(line)
            if requirement.marker is None or any(
                requirement.marker.evaluate({"extra": extra}) for extra in (wanted or {""})
            ):
                pending.append((canonicalize_name(requirement.name), frozenset(requirement.extras)))
    return {name for name, _ in seen}


def third_party(module: str) -> set[str] | None:
    """The distributions that provide the top-level package of `module`; None for the standard library and for
    the project's own packages."""
    top = module.partition(".")[0]
    if top in sys.stdlib_module_names or top in PACKAGES or top in LOOSE_FOLDERS or top == "__future__":
        return None
    return {canonicalize_name(name) for name in _PROVIDERS.get(top, [top])}


_PROVIDERS = importlib.metadata.packages_distributions()


def test_the_import_reader_tells_module_level_lazy_and_typing_only_imports_apart(tmp_path: Path) -> None:
    source = """
from typing import TYPE_CHECKING
import json
from . import sibling
from ..other import thing

if TYPE_CHECKING:
    from boto3 import Session
else:
    import csv


class Shape:
    import decimal

    def method(self):
        import boto3
        return lambda: __import__("ignored")
"""
    found = {
        (each.module, each.lazy, each.typing_only)
        for each in imports_of(source, "pkg.sub.mod", tmp_path / "mod.py", is_package=False)
    }
    assert found == {
        ("typing", False, False),
        ("typing.TYPE_CHECKING", False, False),
        ("json", False, False),
        ("pkg.sub", False, False),
        ("pkg.sub.sibling", False, False),
        ("pkg.other", False, False),
        ("pkg.other.thing", False, False),
        ("boto3", False, True),
        ("boto3.Session", False, True),
        ("csv", False, False),
        ("decimal", False, False),
        ("boto3", True, False),
    }


def test_every_package_is_read() -> None:
    read = {found.importer.partition(".")[0] for found in ALL_IMPORTS}
    assert set(PACKAGES) | set(LOOSE_FOLDERS) <= read


def test_the_sdk_imports_neither_the_runner_nor_the_control_plane() -> None:
    assert offending([
        found for found in imports_by("bifrost")
        if any(is_under(found.module, other) for other in ("bifrost_runner", "control_plane", "bifrost_devtools"))
    ]) == []  # fmt: skip


def sdk_face() -> list[Import]:
    """The imports of what authors import: the SDK but its internal part, the API's bodies and the client."""
    return [
        found for found in imports_by("bifrost")
        if not any(is_under(found.importer, other) for other in (INTERNAL, API_MODELS, CLIENT))
    ]  # fmt: skip


def test_the_sdk_face_imports_neither_its_internal_part_nor_the_api_nor_the_client() -> None:
    """What authors import works without the runner-and-control-plane contract (which can change freely), and
    without what only callers of the API need."""
    assert offending([
        found for found in sdk_face()
        if any(is_under(found.module, other) for other in (INTERNAL, API_MODELS, CLIENT))
    ]) == []  # fmt: skip


def test_the_command_imports_neither_the_runner_nor_the_control_plane() -> None:
    """`bifrost` installs for CI without the server or the runner: what they add comes through entry points."""
    assert offending([
        found for found in imports_by("bifrost_cli")
        if any(is_under(found.module, other) for other in ("bifrost_runner", "control_plane", "bifrost_devtools"))
    ]) == []  # fmt: skip


def test_the_runner_imports_the_command_only_in_functions() -> None:
    """`bifrost local` comes with the runner's `cli` extra; the runner itself loads without the command."""
    assert offending([
        found for found in imports_by("bifrost_runner")
        if is_under(found.module, "bifrost_cli") and not (found.lazy or found.typing_only)
    ]) == []  # fmt: skip


def test_the_sdk_face_imports_nothing_its_extras_bring_not_even_lazily() -> None:
    """boto3 and the like are for the internal part's S3 helper; what authors import never reaches for them."""
    loaded = installed_with("bifrost-sdk")
    assert offending([
        found for found in sdk_face()
        if not found.typing_only and (providers := third_party(found.module)) is not None and not providers & loaded
    ]) == []  # fmt: skip


def test_the_runner_never_imports_the_control_plane() -> None:
    assert offending([
        found for found in imports_by("bifrost_runner")
        if is_under(found.module, "control_plane") or is_under(found.module, "bifrost_devtools")
    ]) == []  # fmt: skip


def test_the_control_plane_never_imports_the_runner() -> None:
    assert offending([
        found for found in imports_by("control_plane")
        if is_under(found.module, "bifrost_runner") or is_under(found.module, "bifrost_devtools")
    ]) == []  # fmt: skip


def test_only_the_runner_imports_workspace_sync_code() -> None:
    """Outside the runner's package, only the test suite and the benchmarks (which test and measure the runner)
    may import the sync code."""
    importers = [
        found for found in ALL_IMPORTS
        if any(is_under(found.module, sync) for sync in WORKSPACE_SYNC)
        and not any(is_under(found.importer, allowed) for allowed in ("bifrost_runner", "tests", "bench"))
    ]  # fmt: skip
    assert offending(importers) == []


def test_the_example_workflows_use_only_the_sdk_face() -> None:
    """What authors write needs nothing but `bifrost` itself."""
    assert offending([
        found for found in imports_by("workspace")
        if is_under(found.module, INTERNAL)
        or any(is_under(found.module, part) for part in ("bifrost_runner", "control_plane", "bifrost_devtools"))
    ]) == []  # fmt: skip


def test_the_benchmarks_and_the_dev_tools_do_not_import_the_tests() -> None:
    """What both need lives in `bifrost_devtools`; the test suite is no library."""
    assert offending([
        found for package in ("bench", "bifrost_devtools") for found in imports_by(package)
        if is_under(found.module, "tests")
    ]) == []  # fmt: skip


def test_no_released_part_imports_the_tests_the_benchmarks_or_the_dev_tools() -> None:
    assert offending([
        found for package in SHIPPED for found in imports_by(package)
        if any(is_under(found.module, dev) for dev in ("tests", "bench", "bifrost_devtools"))
    ]) == []  # fmt: skip


@pytest.mark.parametrize(
    ("package", "distribution", "extras", "lazily_with_extras"),
    [
        # The SDK loads with pydantic and croniter alone; boto3 only once its internal S3 helper makes a client.
        ("bifrost", "bifrost-sdk", frozenset(), frozenset({"s3"})),
        # The HTTP client, with what the SDK's `client` extra brings (httpx).
        (CLIENT, "bifrost-sdk", frozenset({"client"}), frozenset({"client"})),
        ("bifrost_cli", "bifrost-cli", frozenset(), frozenset()),
        # typer only for `bifrost local`, with the runner's `cli` extra.
        ("bifrost_runner", "bifrost-runner", frozenset(), frozenset({"cli"})),
        ("control_plane", "bifrost-server", frozenset(), frozenset()),
    ],
)
def test_each_part_imports_only_what_installing_it_brings(
    package: str, distribution: str, extras: frozenset[str], lazily_with_extras: frozenset[str]
) -> None:
    """The runner image holds the runner and the SDK alone, and an author's environment the SDK alone: an
    import of anything their distributions do not require would fail there, not in this development workspace.
    What an extra brings may only be imported in a function, so that the part loads without it (the client, a
    part of the SDK that needs its extra, excepted)."""
    loaded = installed_with(distribution, extras)
    lazily = installed_with(distribution, lazily_with_extras)
    imports = imports_by(package)
    if package == "bifrost":
        imports = [found for found in imports if not is_under(found.importer, CLIENT)]
    missing = []
    for found in imports:
        providers = third_party(found.module)
        if found.typing_only or providers is None:
            continue
        allowed = lazily if found.lazy else loaded
        if not providers & allowed:
            missing.append(found)
    assert offending(missing) == []
