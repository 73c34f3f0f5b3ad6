"""`bifrost schedules`: the schedules of the organization acted for (org admins), or every one (platform
admins)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer

from bifrost_cli import output
from bifrost_cli.options import OrgOption, Output, OutputOption, ProfileOption, connect

if TYPE_CHECKING:
    from bifrost.api import ScheduleOut

app = typer.Typer(name="schedules", help="Schedules: workflows started at the times of a cron expression.")

ScheduleId = Annotated[
    str, typer.Argument(help="The schedule's id (see `bifrost schedules list`).", show_default=False)
]


@app.command("list")
def list_schedules(
    org: OrgOption = None, profile: ProfileOption = None, output_format: OutputOption = Output.TABLE
) -> None:
    """Every schedule you manage: its workflow, times, whether it fires, and when next."""
    with connect(profile, org) as client:
        schedules = client.list_schedules()
    output.listing(
        output_format,
        schedules,
        ("ID", "WORKFLOW", "CRON", "TIME ZONE", "STATE", "NEXT FIRE", "SOURCE"),
        lambda s: (
            s.id,
            s.workflow_name,
            s.cron,
            s.timezone,
            _state(s),
            output.when(s.next_fire_at),
            s.source.value,
        ),
        empty="no schedules",
    )


@app.command()
def show(
    schedule_id: ScheduleId,
    org: OrgOption = None,
    profile: ProfileOption = None,
    output_format: OutputOption = Output.TABLE,
) -> None:
    """One schedule: its settings, its next five fire times and its last runs."""
    with connect(profile, org) as client:
        schedule = client.get_schedule(schedule_id)
    _print(schedule, output_format)


@app.command()
def enable(
    schedule_id: ScheduleId,
    org: OrgOption = None,
    profile: ProfileOption = None,
    output_format: OutputOption = Output.TABLE,
) -> None:
    """Let the schedule fire again, from its next fire time on (missed ones follow its catch-up policy)."""
    with connect(profile, org) as client:
        schedule = client.enable_schedule(schedule_id)
    _print(schedule, output_format)


@app.command()
def disable(
    schedule_id: ScheduleId,
    org: OrgOption = None,
    profile: ProfileOption = None,
    output_format: OutputOption = Output.TABLE,
) -> None:
    """Stop the schedule's fires; its settings and runs stay."""
    with connect(profile, org) as client:
        schedule = client.disable_schedule(schedule_id)
    _print(schedule, output_format)


def _state(schedule: ScheduleOut) -> str:
    if not schedule.enabled:
        return "disabled"
    return "needs attention" if schedule.needs_attention else "enabled"


def _print(schedule: ScheduleOut, output_format: Output) -> None:
    if output_format == "json":
        output.print_json(schedule)
        return
    out = output.stdout()
    out.print(f"[bold]{schedule.id}[/bold]  {schedule.workflow_name}")
    if schedule.description:
        out.print(schedule.description, markup=False)
    details = [
        f"cron: {schedule.cron} ({schedule.timezone})",
        _state(schedule),
        f"overlap: {schedule.overlap_policy.value}",
        f"catch-up: {schedule.catch_up_policy.value}",
        f"source: {schedule.source.value}",
        f"scope: {schedule.org_id or 'global'}",
    ]
    out.print(" · ".join(details), markup=False)
    if schedule.needs_attention:
        out.print(f"needs attention: {schedule.needs_attention}", markup=False)
    if schedule.parameters:
        out.print(f"parameters: {json.dumps(schedule.parameters, ensure_ascii=False)}", markup=False)
    out.print()
    output.table(
        ("NEXT FIRE TIMES",), [(output.when(time),) for time in schedule.next_fire_times], empty="no next fire"
    )
    out.print()
    output.table(
        ("FIRE TIME", "OUTCOME", "EXECUTION", "STATUS", "DETAIL"),
        [
            (
                output.when(run.fire_time),
                run.outcome,
                run.execution_id or "",
                run.execution_status.value if run.execution_status else "",
                run.detail or "",
            )
            for run in schedule.last_runs
        ],
        empty="no runs yet",
    )
