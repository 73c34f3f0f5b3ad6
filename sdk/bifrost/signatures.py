"""The live front-end: what a decorated function's signature says, read with `inspect` at import time."""

from __future__ import annotations

import ast
import inspect
import sys
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from bifrost.docstrings import Docstring, parse_docstring
from bifrost.parameters import NO_ANNOTATION, ParameterSpec

_KIND_PROBLEMS = {
    inspect.Parameter.POSITIONAL_ONLY: "is positional-only",
    inspect.Parameter.VAR_POSITIONAL: "collects extra positional arguments (*args)",
    inspect.Parameter.VAR_KEYWORD: "collects extra keyword arguments (**kwargs)",
}


@dataclass(frozen=True)
class FunctionShape:
    """What both front-ends know about a decorated function; `bifrost.metadata` turns it into an info model."""

    function_name: str
    file: str
    line: int
    is_async: bool
    docstring: Docstring
    parameters: list[ParameterSpec]
    problems: list[str] = field(default_factory=list)
    """Signature problems that make the function unusable as a workflow (reported by `bifrost.metadata`)."""


def signature_problem(name: str, problem: str) -> str:
    return f"parameter '{name}' {problem}; workflow parameters are passed by name"


def function_shape(func: Callable[..., Any]) -> FunctionShape:
    docstring = parse_docstring(inspect.getdoc(func))
    signature = inspect.signature(func)
    return FunctionShape(
        function_name=func.__name__,
        file=module_file(func),
        line=func.__code__.co_firstlineno,
        is_async=inspect.iscoroutinefunction(func),
        docstring=docstring,
        parameters=parameter_specs(func, docstring),
        problems=[
            signature_problem(p.name, _KIND_PROBLEMS[p.kind])
            for p in signature.parameters.values()
            if p.kind in _KIND_PROBLEMS
        ],
    )


def parameter_specs(func: Callable[..., Any], docstring: Docstring | None = None) -> list[ParameterSpec]:
    """Every parameter that can be passed by name, with its resolved annotation and docstring description."""
    docstring = docstring or parse_docstring(inspect.getdoc(func))
    hints = _type_hints(func)
    specs = []
    for param in inspect.signature(func).parameters.values():
        if param.kind in _KIND_PROBLEMS:
            continue
        annotation = hints.get(param.name, NO_ANNOTATION)
        unsupported = None
        if isinstance(annotation, str):
            unsupported, annotation = unquoted(annotation), NO_ANNOTATION
        specs.append(
            ParameterSpec(
                name=param.name,
                annotation=annotation,
                default=param.default,
                description=docstring.params.get(param.name),
                unsupported=unsupported,
            )
        )
    return specs


def _type_hints(func: Callable[..., Any]) -> dict[str, Any]:
    """Resolved annotations; a string annotation that does not resolve stays a string (reported unsupported)."""
    try:
        return typing.get_type_hints(func, include_extras=True)
    except Exception:  # an unresolvable forward reference in one annotation must not hide the others
        resolved: dict[str, Any] = {}
        for name, annotation in getattr(func, "__annotations__", {}).items():
            try:
                resolved[name] = typing.get_type_hints(_Single(annotation, func), include_extras=True)["value"]
            except Exception:
                resolved[name] = annotation if isinstance(annotation, str) else repr(annotation)
        return resolved


def unquoted(annotation_text: str) -> str:
    """`Thing` for an annotation written as the string "Thing" (how both front-ends name it in warnings)."""
    try:
        expression = ast.parse(annotation_text, mode="eval").body
    except SyntaxError:
        return annotation_text
    if isinstance(expression, ast.Constant) and isinstance(expression.value, str):
        return unquoted(expression.value)
    return annotation_text


class _Single:
    """A stand-in object carrying one annotation, so `get_type_hints` resolves it alone."""

    def __init__(self, annotation: Any, func: Callable[..., Any]) -> None:
        self.__annotations__ = {"value": annotation}
        self.__globals__ = getattr(func, "__globals__", {})
        self.__module__ = func.__module__


def module_file(func: Callable[..., Any]) -> str:
    """The function's file relative to the import root, as discovery reports it (`reports/daily.py`)."""
    module = sys.modules.get(func.__module__)
    path = getattr(module, "__file__", None) or func.__code__.co_filename
    if func.__module__ == "__main__" or module is None:
        return PurePosixPath(path).name
    parts = func.__module__.split(".")
    if PurePosixPath(path).name == "__init__.py":
        parts.append("__init__")
    return "/".join(parts) + ".py"
