"""How commands print: tables and messages for people, JSON for programs; what a program reads goes to stdout,
everything else (progress, notes) to stderr."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import BaseModel
    from rich.console import Console


# Not on a terminal (a pipe, a CI log), lines are as long as they need: no id is cut or folded.
UNBOUNDED_WIDTH = 100_000


def stdout() -> Console:
    from rich.console import Console

    width = None if sys.stdout.isatty() else UNBOUNDED_WIDTH
    return Console(highlight=False, soft_wrap=True, width=width)


def stderr() -> Console:
    from rich.console import Console

    width = None if sys.stderr.isatty() else UNBOUNDED_WIDTH
    return Console(stderr=True, highlight=False, soft_wrap=True, width=width)


def note(message: str) -> None:
    """A message for the person at the terminal, on stderr (markup allowed)."""
    stderr().print(message)


def print_json(value: Any) -> None:
    """`value` as JSON on stdout: pydantic models (and lists of them) as the API sends them."""
    sys.stdout.write(json.dumps(_plain(value), indent=2, ensure_ascii=False) + "\n")


def _plain(value: Any) -> Any:
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if isinstance(value, list | tuple):
        return [_plain(each) for each in value]
    return value


def table(columns: Sequence[str], rows: Iterable[Sequence[Any]], *, empty: str = "nothing to show") -> None:
    """A table on stdout; `empty` on stderr when there are no rows."""
    from rich.table import Table

    rendered = Table(box=None, pad_edge=False, header_style="bold")
    for column in columns:
        rendered.add_column(column, overflow="fold")
    count = 0
    for row in rows:
        rendered.add_row(*("" if cell is None else str(cell) for cell in row))
        count += 1
    if count == 0:
        note(empty)
        return
    stdout().print(rendered)


def listing(output: str, items: Sequence[BaseModel], columns: Sequence[str], row: Any, *, empty: str) -> None:
    """Items as JSON, or as a table with one row per item (`row(item)` its cells)."""
    if output == "json":
        print_json(list(items))
    else:
        table(columns, (row(item) for item in items), empty=empty)


def when(timestamp: Any) -> str:
    """A timestamp, short and in local time."""
    if timestamp is None:
        return ""
    return str(timestamp.astimezone().strftime("%Y-%m-%d %H:%M:%S"))
