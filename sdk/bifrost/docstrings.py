"""Google-style docstrings: the summary becomes a description, the `Args:` section parameter descriptions."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_SECTION_HEADER = re.compile(r"^(\w[\w ]*):\s*$")
_ARG_LINE = re.compile(r"^(\*{0,2}\w+)\s*(?:\(([^)]*)\))?\s*:\s*(.*)$")
_ARGS_HEADERS = {"Args", "Arguments", "Parameters", "Params"}


@dataclass(frozen=True)
class Docstring:
    summary: str | None = None
    params: dict[str, str] = field(default_factory=dict)


def parse_docstring(text: str | None) -> Docstring:
    """Split a cleaned docstring (`inspect.cleandoc` form) into its first paragraph and its Args entries."""
    if not text or not text.strip():
        return Docstring()
    lines = text.strip().splitlines()
    summary_lines: list[str] = []
    for line in lines:
        if not line.strip() or _SECTION_HEADER.match(line):
            break
        summary_lines.append(line.strip())
    summary = " ".join(summary_lines) or None
    return Docstring(summary=summary, params=_args_section(lines))


def _args_section(lines: list[str]) -> dict[str, str]:
    params: dict[str, str] = {}
    in_args = False
    entry_indent: int | None = None
    current: str | None = None
    for line in lines:
        if line[:1].isalnum() or line[:1] == "_":  # only an unindented line can be a section header
            header = _SECTION_HEADER.match(line)
            if header:
                in_args = header.group(1) in _ARGS_HEADERS
                entry_indent, current = None, None
                continue
        if not in_args:
            continue
        stripped = line.strip()
        if not stripped:
            continue
        indent = len(line) - len(line.lstrip())
        if entry_indent is None:
            entry_indent = indent
        match = _ARG_LINE.match(stripped)
        if indent == entry_indent and match:
            current = match.group(1).lstrip("*")
            params[current] = match.group(3).strip()
        elif current is not None and indent > entry_indent:
            params[current] = f"{params[current]} {stripped}".strip()
    return params
