"""The `bifrost` command.

Its own commands talk to a server over the API (`bifrost.client`) or work offline (`discover`); installed parts
add theirs through entry points of the group `bifrost.cli` (see `bifrost_cli.plugins`): the server `serve`,
`nats-config` and `admin`, the runner `local`. Nothing of theirs is imported unless their command runs or the
help lists it.
"""

from __future__ import annotations

import sys
from typing import Any

import typer
from typer.core import TyperGroup

from bifrost_cli import discover, executions, keys, profiles, run, schedules, values, workflows, workspace
from bifrost_cli.exits import expected_failure


class _Commands(TyperGroup):
    """The core commands, then those of the installed parts, each loaded only when asked for."""

    def list_commands(self, ctx: Any) -> list[str]:
        from bifrost_cli import plugins

        core = super().list_commands(ctx)
        return [*core, *(name for name in plugins.names() if name not in core)]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        found = super().get_command(ctx, cmd_name)
        if found is not None:
            return found
        from bifrost_cli import plugins  # looked up only for a command of another part

        return plugins.command(cmd_name)


app = typer.Typer(
    cls=_Commands,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Bifrost: run plain Python workflows for operations teams.\n\n"
    "The server is $BIFROST_URL with the key $BIFROST_API_KEY, or a profile (`bifrost profile set`). "
    "Exit codes: 0 success; 1 the execution Failed (discover: problems found); 2 usage, or a request the server "
    "refused as invalid; 3 CompletedWithErrors; 4 Timeout; 5 Cancelled; 6 the server cannot be reached or failed; "
    "7 not allowed (no key, a wrong one, or not permitted); 8 still running after --timeout; 130 interrupted.",
)
app.command("run")(run.run)
app.add_typer(executions.app)
app.add_typer(workflows.app)
app.add_typer(keys.app)
app.add_typer(schedules.app)
app.add_typer(values.secrets)
app.add_typer(values.config)
app.add_typer(workspace.app)
app.command("discover")(discover.discover)
app.add_typer(profiles.app)


def main() -> None:
    """The console script: an expected failure ends in one line on stderr and its exit code, never a traceback."""
    try:
        app(prog_name="bifrost")
    except Exception as exc:
        failure = expected_failure(exc)
        if failure is None:
            raise
        sys.stderr.write(f"bifrost: {failure.message}\n")
        sys.exit(failure.code)
