"""`bifrost discover`: a workspace folder read as the server reads it, offline; for pre-commit and CI."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from bifrost_cli import output
from bifrost_cli.exits import CliError, ExitCode
from bifrost_cli.options import Output, OutputOption


def discover(
    folder: Annotated[Path, typer.Argument(help="The workspace folder.", show_default=False, file_okay=False)],
    output_format: OutputOption = Output.TABLE,
) -> None:
    """Check a workspace folder offline: its workflows, data providers and problems.

    Found without importing anything, as the server finds them; every problem that would keep one from
    registering is printed as file:line: message. Exit code 1 when there is a problem.
    """
    from bifrost._internal.discovery import discover_workspace

    try:
        found = discover_workspace(folder)
    except NotADirectoryError as exc:
        raise CliError(str(exc)) from exc
    problems: list[tuple[str, int | None, str]] = [(error.file, error.line, error.message) for error in found.errors]
    for conflict in found.conflicts:
        places = ", ".join(f"{place.file}:{place.line}" for place in conflict.places)
        message = f"the name {conflict.name!r} is defined more than once ({places}); none of them is registered"
        problems.extend((place.file, place.line, message) for place in conflict.places)
    problems.sort(key=lambda problem: (problem[0], problem[1] or 0))
    warnings = [
        (info.file, info.line, warning)
        for info in [*found.workflows, *found.data_providers]
        for warning in info.warnings
    ]
    if output_format == "json":
        output.print_json(
            {
                "files_scanned": found.files_scanned,
                "workflows": [info.model_dump(mode="json") for info in found.workflows],
                "data_providers": [info.model_dump(mode="json") for info in found.data_providers],
                "problems": [{"file": f, "line": line, "message": m} for f, line, m in problems],
                "warnings": [{"file": f, "line": line, "message": m} for f, line, m in warnings],
            }
        )
    else:
        rows = [
            *(("workflow", w.name, f"{w.file}:{w.line}", w.execution_mode) for w in found.workflows),
            *(("data provider", p.name, f"{p.file}:{p.line}", "") for p in found.data_providers),
        ]
        output.table(("KIND", "NAME", "WHERE", "MODE"), sorted(rows, key=lambda row: row[1]), empty="no workflows")
        err = output.stderr()
        for file, warning_line, warning in warnings:
            err.print(f"{_where(folder, file, warning_line)}: warning: {warning}", markup=False)
        for file, line, message in problems:
            err.print(f"{_where(folder, file, line)}: {message}", markup=False)
        summary = (
            f"{found.files_scanned} files, {len(found.workflows)} workflows, {len(found.data_providers)} data providers"
        )
        output.note(f"{summary}, {len(problems)} problems" if problems else f"{summary}, no problems")
    if problems:
        raise typer.Exit(ExitCode.FAILED)


def _where(folder: Path, file: str, line: int | None) -> str:
    path = os.path.join(folder, file)
    return f"{path}:{line}" if line else path
