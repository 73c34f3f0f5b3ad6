"""`bifrost run`: start a workflow, follow it, print its outcome, exit with the code of its final status."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from bifrost_cli import output
from bifrost_cli.exits import CliError, ExitCode
from bifrost_cli.options import OrgOption, Output, OutputOption, ProfileOption, connect
from bifrost_cli.params import parse_parameters

if TYPE_CHECKING:
    from bifrost.client import Client

ParamOption = Annotated[
    list[str] | None,
    typer.Option(
        "--param",
        "-p",
        help="A parameter: name=value (text, converted to the parameter's type by the server) or name:=JSON.",
        show_default=False,
    ),
]
ParamsFileOption = Annotated[
    Path | None,
    typer.Option("--params-file", help="A JSON object of parameters; -p wins over it.", show_default=False),
]
WaitOption = Annotated[
    bool, typer.Option("--wait/--no-wait", help="Wait until it finishes, or print its id once it started.")
]
FollowOption = Annotated[bool, typer.Option("--follow", "-f", help="Print its log lines as they come.")]
TimeoutOption = Annotated[
    float | None,
    typer.Option(
        "--timeout",
        min=0.001,
        help="Stop waiting after this many seconds (exit 8); the execution goes on.",
        show_default=False,
    ),
]


def run(
    workflow: Annotated[str, typer.Argument(help="The workflow's name.", show_default=False)],
    param: ParamOption = None,
    params_file: ParamsFileOption = None,
    wait: WaitOption = True,
    follow: FollowOption = False,
    timeout: TimeoutOption = None,
    org: OrgOption = None,
    profile: ProfileOption = None,
    output_format: OutputOption = Output.TABLE,
) -> None:
    """Run a workflow and wait for its outcome.

    Exit code: 0 Success, 1 Failed, 3 CompletedWithErrors, 4 Timeout, 5 Cancelled; 8 when --timeout passed
    first; Ctrl-C asks whether to cancel the execution (see `bifrost --help` for the others).
    """
    parameters = parse_parameters(param or [], params_file)
    with connect(profile, org) as client:
        code = start_and_report(
            client, workflow, parameters, wait=wait, follow=follow, timeout=timeout, output_format=output_format
        )
    raise typer.Exit(code)


def start_and_report(
    client: Client,
    workflow: str,
    parameters: dict[str, Any],
    *,
    wait: bool,
    follow: bool,
    timeout: float | None,
    output_format: str,
) -> ExitCode:
    """Start `workflow`; with `wait`, follow it and report its outcome. The exit code."""
    from bifrost.api import ExecutionAccepted
    from bifrost_cli import watching

    if not wait and (follow or timeout is not None):
        raise CliError("--follow and --timeout wait for the execution: they do not go with --no-wait")
    started = client.execute(workflow, parameters, sync=None if wait else False)
    if isinstance(started, ExecutionAccepted):
        if not wait:
            if output_format == "json":
                output.print_json(started)
            else:
                print(started.execution_id)
            return ExitCode.SUCCESS
        execution = client.get_execution(started.execution_id)
        printer = watching.LogPrinter(to_stderr=output_format == "json") if follow else None
        execution = watching.watch(client, execution, printer=printer, timeout=timeout)
    else:
        execution = started
        if follow:
            watching.print_logs(client, execution.execution_id, watching.LogPrinter(to_stderr=output_format == "json"))
    return watching.report(execution, output_format)
