"""`bifrost local`, the command the runner adds to `bifrost` (an entry point of the group `bifrost.cli`, see
bifrost_cli.plugins). It needs the `bifrost` command itself: `pip install 'bifrost-runner[cli]'`.

Without `from __future__ import annotations`: typer reads the command's annotations, which name what the
function imports."""

import json
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import typer

    from bifrost_cli.exits import ExitCode
    from bifrost_runner.local import LocalOutcome


def local() -> "typer.Typer":
    """The `local` command group, made when `bifrost` asks for it (typer comes with the `cli` extra)."""
    from pathlib import Path
    from typing import Annotated

    import typer

    from bifrost_cli.exits import CliError
    from bifrost_cli.options import Output, OutputOption
    from bifrost_cli.params import parse_parameters
    from bifrost_cli.run import ParamOption, ParamsFileOption

    group = typer.Typer(add_completion=False)

    @group.callback()
    def workflows_here() -> None:
        """Workflows run on this machine, without a server."""

    @group.command("run")
    def run(
        target: Annotated[
            str, typer.Argument(help="FILE.py:FUNCTION, or a workflow's name in the workspace.", show_default=False)
        ],
        param: ParamOption = None,
        params_file: ParamsFileOption = None,
        workspace: Annotated[
            Path, typer.Option(help="The workspace's root: on the import path, as in a runner.", file_okay=False)
        ] = Path("."),
        values: Annotated[
            Path | None,
            typer.Option(
                help="A TOML (or .json) file with `secrets` and `config` tables, for the context's helpers.",
                show_default=False,
                dir_okay=False,
            ),
        ] = None,
        timeout: Annotated[
            float | None,
            typer.Option(min=1, help="Seconds before it times out (default: the workflow's own).", show_default=False),
        ] = None,
        output_format: OutputOption = Output.TABLE,
    ) -> None:
        """Run a workflow here, with the runner's code and a local context.

        Secrets and config come from --values; sub-workflows run here too; Ctrl-C cancels it. The exit code says
        how it ended, as `bifrost run`'s does.
        """
        from bifrost._internal.schema import ParameterValidationError
        from bifrost_runner.local import LocalRunError, LocalValues, find_in_file, find_workflow, run_locally

        parameters = parse_parameters(param or [], params_file)
        try:
            local_values = LocalValues() if values is None else LocalValues.read(values)
            if ":" in target:
                file, _, function_name = target.rpartition(":")
                info = find_in_file(workspace, Path(file), function_name)
            else:
                info = find_workflow(workspace, target)
            log = sys.stderr if output_format == Output.JSON else sys.stdout
            done = run_locally(workspace, info, parameters, local_values, log=log, timeout_seconds=timeout)
        except LocalRunError as exc:
            raise CliError(str(exc)) from exc
        except ParameterValidationError as exc:
            raise CliError("; ".join(f"{error.field}: {error.message}" for error in exc.errors)) from exc
        raise typer.Exit(_report(done, output_format))

    return group


def _report(done: "LocalOutcome", output_format: str) -> "ExitCode":
    """How the run ended, as `bifrost run` reports an execution; the exit code of its status."""
    from bifrost_cli import output
    from bifrost_cli.exits import of_status
    from bifrost_cli.options import Output

    outcome = done.outcome
    error = (
        {"type": outcome.error_type, "message": outcome.error_message, "traceback": outcome.traceback}
        if outcome.error_type is not None or outcome.error_message is not None
        else None
    )
    if output_format == Output.JSON:
        output.print_json(
            {
                "execution_id": done.execution_id,
                "workflow_name": done.workflow_name,
                "status": outcome.status.value,
                "result": outcome.result,
                "error": error,
                "variables": done.variables,
                "duration_ms": done.duration_ms,
            }
        )
        return of_status(outcome.status.value)
    err = output.stderr()
    style = "green" if outcome.status.value == "Success" else "red"
    err.print(
        f"[bold]{done.workflow_name}[/bold] [{style}]{outcome.status.value}[/{style}] "
        f"in {done.duration_ms / 1000:.2f} s · ran here"
    )
    if outcome.traceback:
        err.print(outcome.traceback.rstrip(), markup=False, style="dim")
    if error is not None and not outcome.traceback:  # whose last line says it already
        err.print(f"{outcome.error_type or 'Error'}: {outcome.error_message or ''}", markup=False)
    if outcome.has_result and outcome.result is not None:
        sys.stdout.write(json.dumps(outcome.result, indent=2, ensure_ascii=False, default=str) + "\n")
    return of_status(outcome.status.value)
