from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

from bifrost import ExecutionContext, OrganizationInfo, UserInfo

REPO_ROOT = Path(__file__).resolve().parents[2]
WORKSPACE = REPO_ROOT / "workspace"

Importer = Callable[[str], ModuleType]


def module_name(relative_file: str) -> str:
    name = relative_file.removesuffix(".py").replace("/", ".")
    return name.removesuffix(".__init__")


@pytest.fixture
def import_from() -> Iterator[Callable[[Path], Importer]]:
    """Import workspace files as the runner does (the workspace root on sys.path), and forget them after."""
    roots: list[str] = []

    def for_root(root: Path) -> Importer:
        roots.append(str(root))
        sys.path.insert(0, str(root))
        importlib.invalidate_caches()
        return lambda relative_file: importlib.import_module(module_name(relative_file))

    yield for_root
    imported_here = [
        name
        for name, module in list(sys.modules.items())
        if any(_location(module).startswith(root) for root in roots)
    ]
    for name in imported_here:
        sys.modules.pop(name, None)
    for root in roots:
        sys.path.remove(root)


def _location(module: ModuleType) -> str:
    """A module's file, or for a namespace package its first folder."""
    spec = getattr(module, "__spec__", None)
    locations = list(getattr(spec, "submodule_search_locations", None) or [])
    return getattr(module, "__file__", None) or (locations[0] if locations else "")


@pytest.fixture
def execution_context() -> ExecutionContext:
    return ExecutionContext(
        execution_id="exec-1",
        workflow_name="echo",
        user=UserInfo(id="u-1", email="ada@example.com", name="Ada"),
        organization=OrganizationInfo(id="org-1", name="Acme"),
        parameters={"message": "hi"},
    )
