"""`bifrost executions`: list, show, logs, cancel, rerun."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from bifrost_cli import output
from bifrost_cli.exits import CliError
from bifrost_cli.options import OrgOption, Output, OutputOption, ProfileOption, connect
from bifrost_cli.run import FollowOption, TimeoutOption, WaitOption, start_and_report

app = typer.Typer(
    name="executions", help="Executions: list them, show one, read or follow its log, cancel it, run it again."
)

ExecutionArgument = Annotated[str, typer.Argument(help="The execution's id.", show_default=False)]
STATUSES = ("Pending", "Running", "Success", "CompletedWithErrors", "Failed", "Timeout", "Cancelled")


@app.command("list")
def list_executions(
    workflow: Annotated[str | None, typer.Option(help="Only this workflow's.", show_default=False)] = None,
    status: Annotated[
        str | None, typer.Option(help=f"Only those in this status: {', '.join(STATUSES)}.", show_default=False)
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=500, help="How many, newest first.")] = 20,
    org: OrgOption = None,
    profile: ProfileOption = None,
    output_format: OutputOption = Output.TABLE,
) -> None:
    """The newest executions you may see."""
    from bifrost.api import ExecutionStatus

    if status is not None and status not in STATUSES:
        raise CliError(f"--status {status!r}: use one of {', '.join(STATUSES)}")
    with connect(profile, org) as client:
        page = client.list_executions(
            workflow=workflow, status=None if status is None else ExecutionStatus(status), limit=limit
        )
    output.listing(
        output_format,
        page.executions,
        ("ID", "WORKFLOW", "STATUS", "CREATED", "DURATION"),
        lambda e: (
            e.execution_id,
            e.workflow_name,
            e.status.value,
            output.when(e.created_at),
            "" if e.duration_ms is None else f"{e.duration_ms / 1000:.2f} s",
        ),
        empty="no executions",
    )


@app.command()
def show(
    execution_id: ExecutionArgument,
    org: OrgOption = None,
    profile: ProfileOption = None,
    output_format: OutputOption = Output.TABLE,
) -> None:
    """One execution: its status, parameters, result or error, and where it ran."""
    with connect(profile, org) as client:
        execution = client.get_execution(execution_id)
    if output_format == "json":
        output.print_json(execution)
        return
    rows: list[tuple[str, object]] = [
        ("execution", execution.execution_id),
        ("workflow", execution.workflow_name),
        ("status", execution.status.value),
        ("waiting for", execution.waiting_for),
        ("parameters", json.dumps(execution.parameters, ensure_ascii=False)),
        ("created", output.when(execution.created_at)),
        ("started", output.when(execution.started_at)),
        ("finished", output.when(execution.finished_at)),
        ("duration", "" if execution.duration_ms is None else f"{execution.duration_ms / 1000:.3f} s"),
        ("log lines", execution.log_count),
        ("organization", execution.org_id),
        ("user", execution.user_id),
        ("parent", execution.parent_execution_id),
        ("revision", execution.workspace_revision),
    ]
    if execution.runner is not None:
        rows.append(("runner", f"{execution.runner.backend} {execution.runner.runner_ref or ''}".strip()))
        rows.extend(("inspect", command) for command in execution.runner.commands)
    if execution.error is not None:
        rows.append(("error", f"{execution.error.type}: {execution.error.message}"))
    if execution.result is not None:
        rows.append(("result", json.dumps(execution.result, ensure_ascii=False, default=str)))
    output.table(("FIELD", "VALUE"), [(name, value) for name, value in rows if value not in (None, "")])
    if execution.error is not None and execution.error.traceback:
        output.stderr().print(execution.error.traceback.rstrip(), markup=False, style="dim")


@app.command()
def logs(
    execution_id: ExecutionArgument,
    follow: FollowOption = False,
    org: OrgOption = None,
    profile: ProfileOption = None,
    output_format: OutputOption = Output.TABLE,
) -> None:
    """The execution's log.

    With --follow, then its new lines as they come, until it finishes; the exit code then says how it
    finished, as `bifrost run`'s does.
    """
    from bifrost_cli import watching

    with connect(profile, org) as client:
        if not follow:
            if output_format == "json":
                output.print_json(list(watching.log_lines(client, execution_id)))
            else:
                watching.print_logs(client, execution_id, watching.LogPrinter(to_stderr=False))
            return
        printer = watching.LogPrinter(to_stderr=output_format == "json")
        execution = watching.watch(client, client.get_execution(execution_id), printer=printer, timeout=None)
        code = watching.report(execution, output_format)
    raise typer.Exit(code)


@app.command()
def cancel(
    execution_id: ExecutionArgument,
    org: OrgOption = None,
    profile: ProfileOption = None,
    output_format: OutputOption = Output.TABLE,
) -> None:
    """Ask a pending or running execution to stop (exit 2 when it has already finished)."""
    with connect(profile, org) as client:
        accepted = client.cancel(execution_id)
    if output_format == "json":
        output.print_json(accepted)
    else:
        output.note(f"Cancelling execution {execution_id} (it was {accepted.status.value})")


@app.command()
def rerun(
    execution_id: ExecutionArgument,
    wait: WaitOption = True,
    follow: FollowOption = False,
    timeout: TimeoutOption = None,
    profile: ProfileOption = None,
    output_format: OutputOption = Output.TABLE,
) -> None:
    """Run an execution's workflow again, with the same parameters.

    For the same organization; then as `bifrost run`. Parameters stored masked (secret values a parent run
    passed on) are sent as stored.
    """
    with connect(profile, None) as client:
        earlier = client.get_execution(execution_id)
    with connect(profile, earlier.org_id) as client:
        code = start_and_report(
            client,
            earlier.workflow_name,
            earlier.parameters,
            wait=wait,
            follow=follow,
            timeout=timeout,
            output_format=output_format,
        )
    raise typer.Exit(code)
