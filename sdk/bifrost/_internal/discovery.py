"""Static discovery: every workflow and data provider of a workspace folder, found WITHOUT importing it.

Each `.py` file is parsed once with `ast`; functions decorated by Bifrost's `@workflow` / `@data_provider`
(however imported: bare, called, `bifrost.workflow`, `from bifrost import workflow as wf`) are described with
the same `WorkflowInfo` / `DataProviderInfo` the decorator attaches at import time. A broken file becomes an
error entry (file, line, message) and the rest of the workspace is still discovered.
"""

from __future__ import annotations

import ast
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from bifrost._internal.static_types import ModuleNames, Unresolvable
from bifrost.docstrings import parse_docstring
from bifrost.errors import WorkflowDefinitionError
from bifrost.metadata import DataProviderInfo, WorkflowInfo, describe_data_provider, describe_workflow
from bifrost.parameters import NO_ANNOTATION, NO_DEFAULT, ParameterSpec
from bifrost.signatures import FunctionShape, signature_problem, unquoted

Kind = Literal["workflow", "data_provider"]

_DECORATORS: dict[str, Kind] = {
    "bifrost.workflow": "workflow",
    "bifrost.decorators.workflow": "workflow",
    "bifrost.data_provider": "data_provider",
    "bifrost.decorators.data_provider": "data_provider",
}
_SKIPPED_DIRS = {"__pycache__", "node_modules", "site-packages"}


class DiscoveryError(BaseModel):
    file: str
    line: int | None
    message: str


class Place(BaseModel):
    kind: Kind
    file: str
    line: int
    function_name: str


class NameConflict(BaseModel):
    """Several functions claim one name: none of them is registered until the names are made unique."""

    name: str
    places: list[Place]


class FileDiscovery(BaseModel):
    """What one file holds; combine several with `combine`."""

    file: str
    workflows: list[WorkflowInfo] = []
    data_providers: list[DataProviderInfo] = []
    errors: list[DiscoveryError] = []


class Discovery(BaseModel):
    workflows: list[WorkflowInfo] = []
    data_providers: list[DataProviderInfo] = []
    errors: list[DiscoveryError] = []
    conflicts: list[NameConflict] = []
    files_scanned: int = 0


def discover_workspace(root: Path) -> Discovery:
    """Scan every `.py` file below `root` (hidden folders and caches skipped), in a stable order."""
    root = Path(root)
    if not root.is_dir():
        raise NotADirectoryError(f"workspace folder {root} does not exist or is not a folder")
    return combine(_discover_relative(root, relative) for relative in _relative_files(root))


def workspace_files(root: Path) -> list[Path]:
    return [Path(root, relative) for relative in _relative_files(root)]


def _relative_files(root: Path) -> list[str]:
    """Workspace-relative POSIX paths of the `.py` files below `root`, sorted."""
    found: list[str] = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d not in _SKIPPED_DIRS]
        prefix = Path(folder).relative_to(root).as_posix() + "/"
        found.extend(("" if prefix == "./" else prefix) + name for name in files if name.endswith(".py"))
    return sorted(found)


def discover_file(root: Path, path: Path) -> FileDiscovery:
    return _discover_relative(root, path.relative_to(root).as_posix())


def _discover_relative(root: Path, relative: str) -> FileDiscovery:
    try:
        with open(os.path.join(root, relative), encoding="utf-8") as file:
            source = file.read()
    except (OSError, UnicodeDecodeError) as exc:
        return _file_result(relative, errors=[DiscoveryError(file=relative, line=None, message=str(exc))])
    return discover_source(relative, source)


def discover_source(path: str, source: str) -> FileDiscovery:
    """The workflows and data providers of one file's text; `path` is its workspace-relative POSIX path."""
    result = _file_result(path)
    if "bifrost" not in source:
        return result
    try:
        tree = ast.parse(source, filename=path)
    except SyntaxError as exc:
        result.errors.append(DiscoveryError(file=path, line=exc.lineno, message=f"syntax error: {exc.msg}"))
        return result
    names = ModuleNames(tree, source)
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.decorator_list:
            for kind, options_node in _bifrost_decorators(node, names):
                _describe(result, path, node, kind, options_node, names)
    return result


def combine(files: Iterable[FileDiscovery]) -> Discovery:
    """One workspace result from per-file results; names claimed more than once become conflicts."""
    errors: list[DiscoveryError] = []
    claims: dict[str, list[WorkflowInfo | DataProviderInfo]] = {}
    files_scanned = 0
    for file in files:
        files_scanned += 1
        errors.extend(file.errors)
        infos: list[WorkflowInfo | DataProviderInfo] = [*file.workflows, *file.data_providers]
        for info in infos:
            claims.setdefault(info.name, []).append(info)
    discovery = Discovery.model_construct(
        workflows=[], data_providers=[], errors=errors, conflicts=[], files_scanned=files_scanned
    )
    for name, claimed in claims.items():
        if len(claimed) > 1:
            discovery.conflicts.append(NameConflict(name=name, places=[_place(info) for info in claimed]))
        elif isinstance(claimed[0], WorkflowInfo):
            discovery.workflows.append(claimed[0])
        else:
            discovery.data_providers.append(claimed[0])
    return discovery


def _file_result(path: str, errors: list[DiscoveryError] | None = None) -> FileDiscovery:
    # Every field given: validating them (in pydantic-core) takes half the time of `model_construct` (in Python)
    return FileDiscovery(file=path, workflows=[], data_providers=[], errors=errors or [])


def _place(info: WorkflowInfo | DataProviderInfo) -> Place:
    kind: Kind = "workflow" if isinstance(info, WorkflowInfo) else "data_provider"
    return Place(kind=kind, file=info.file, line=info.line, function_name=info.function_name)


def _bifrost_decorators(
    node: ast.FunctionDef | ast.AsyncFunctionDef, names: ModuleNames
) -> Iterator[tuple[Kind, ast.Call | None]]:
    for decorator in node.decorator_list:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        kind = _DECORATORS.get(names.qualified_name(target) or "")
        if kind:
            yield kind, decorator if isinstance(decorator, ast.Call) else None


def _describe(
    result: FileDiscovery,
    path: str,
    node: ast.FunctionDef | ast.AsyncFunctionDef,
    kind: Kind,
    call: ast.Call | None,
    names: ModuleNames,
) -> None:
    line = min(decorator.lineno for decorator in node.decorator_list)
    decorator = f"@{kind}"
    try:
        options = _options(call, names, decorator, node.name)
        shape = _function_shape(path, line, node, names)
        if kind == "workflow":
            result.workflows.append(describe_workflow(shape, options))
        else:
            result.data_providers.append(describe_data_provider(shape, options))
    except WorkflowDefinitionError as exc:
        result.errors.append(DiscoveryError(file=path, line=line, message=str(exc)))


def _options(call: ast.Call | None, names: ModuleNames, decorator: str, function_name: str) -> dict[str, Any]:
    if call is None:
        return {}
    if call.args:
        raise WorkflowDefinitionError(
            f"{decorator} {function_name}: options go by keyword, as in {decorator}(name=...)"
        )
    options: dict[str, Any] = {}
    for keyword in call.keywords:
        if keyword.arg is None:
            raise WorkflowDefinitionError(
                f"{decorator} {function_name}: options cannot be unpacked with ** (they are read without "
                "importing the file)"
            )
        try:
            options[keyword.arg] = names.literal(keyword.value)
        except Unresolvable:
            raise WorkflowDefinitionError(
                f"{decorator} {function_name}: option '{keyword.arg}' must be a literal value (a string, number, "
                f"list or dict, or a module-level constant holding one), not {ast.unparse(keyword.value)}"
            ) from None
    return options


def _function_shape(
    path: str, line: int, node: ast.FunctionDef | ast.AsyncFunctionDef, names: ModuleNames
) -> FunctionShape:
    docstring = parse_docstring(ast.get_docstring(node))
    arguments = node.args
    problems = [signature_problem(arg.arg, "is positional-only") for arg in arguments.posonlyargs]
    if arguments.vararg:
        problems.append(signature_problem(arguments.vararg.arg, "collects extra positional arguments (*args)"))
    if arguments.kwarg:
        problems.append(signature_problem(arguments.kwarg.arg, "collects extra keyword arguments (**kwargs)"))
    positional = [*arguments.posonlyargs, *arguments.args]
    defaults: list[ast.expr | None] = [None] * (len(positional) - len(arguments.defaults)) + list(arguments.defaults)
    specs = [
        _parameter(arg, default, docstring.params.get(arg.arg), names)
        for arg, default in [
            *zip(positional, defaults, strict=True),
            *zip(arguments.kwonlyargs, arguments.kw_defaults, strict=True),
        ]
        if arg not in arguments.posonlyargs
    ]
    return FunctionShape(
        function_name=node.name,
        file=path,
        line=line,
        is_async=isinstance(node, ast.AsyncFunctionDef),
        docstring=docstring,
        parameters=specs,
        problems=problems,
    )


def _parameter(arg: ast.arg, default: ast.expr | None, description: str | None, names: ModuleNames) -> ParameterSpec:
    default_value = NO_DEFAULT if default is None else names.default_value(default)
    if arg.annotation is None:
        return ParameterSpec(name=arg.arg, default=default_value, description=description)
    try:
        annotation = names.resolve(arg.annotation)
    except Unresolvable:
        return ParameterSpec(
            name=arg.arg,
            annotation=NO_ANNOTATION,
            default=default_value,
            description=description,
            unsupported=unquoted(ast.unparse(arg.annotation)),
        )
    return ParameterSpec(name=arg.arg, annotation=annotation, default=default_value, description=description)
