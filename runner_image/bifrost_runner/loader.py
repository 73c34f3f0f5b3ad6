"""Importing the workflow's module from the workspace and finding its function."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from bifrost.decorators import descriptions_deferred


class WorkflowLoadError(Exception):
    """The workflow's file or function is not where the payload says."""


def _import_by_path(path: Path, relative: Path) -> ModuleType:
    parts = relative.with_suffix("").parts
    if not all(part.isidentifier() for part in parts):
        # Not importable as a dotted name (a dash in a folder name, say): load the file on its own.
        spec = importlib.util.spec_from_file_location(f"bifrost_workspace_{abs(hash(relative))}", path)
        if spec is None or spec.loader is None:
            raise WorkflowLoadError(f"{relative} cannot be loaded as a Python module")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        return module
    module_name = ".".join(parts)
    module = importlib.import_module(module_name)
    if Path(module.__file__ or "").resolve() != path:
        raise WorkflowLoadError(
            f"{relative} cannot be imported as {module_name!r}: that name is taken by {module.__file__ or module!r}"
        )
    return module


def load_workflow(workspace_dir: Path, file: str, function_name: str) -> Callable[..., Any]:
    """Import `file` (relative to the workspace, whose root goes on sys.path so its packages import each
    other) and return its `function_name`."""
    root = workspace_dir.resolve()
    path = (root / file).resolve()
    if not path.is_relative_to(root):
        raise WorkflowLoadError(f"workflow file {file!r} is outside the workspace {root}")
    if path.suffix != ".py" or not path.is_file():
        raise WorkflowLoadError(f"workflow file {file!r} not found in the workspace {root}")
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    with descriptions_deferred():  # the registry has the workflow's info; calling it needs none
        module = _import_by_path(path, path.relative_to(root))
    function = getattr(module, function_name, None)
    if function is None:
        raise WorkflowLoadError(f"{file} has no function {function_name!r}")
    if not callable(function):
        raise WorkflowLoadError(f"{file}: {function_name!r} is a {type(function).__name__}, not a function")
    return function  # type: ignore[no-any-return]
