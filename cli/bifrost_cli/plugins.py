"""Commands other installed parts add to `bifrost`.

A distribution adds a command with an entry point of the group `bifrost.cli`, named as the command, whose object
is a `typer.Typer` (one command, or a group of them), or a function that makes one (so that a part which has
typer only with an extra imports it only then):

    [project.entry-points."bifrost.cli"]
    serve = "control_plane.cli:serve"

It is imported only when its command runs or the help lists it; its module should import what the command needs
inside the command, so that listing it stays cheap.
"""

from __future__ import annotations

import functools
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import typer

from bifrost_cli.exits import CliError

GROUP = "bifrost.cli"


@functools.cache
def _installed() -> dict[str, EntryPoint]:
    return {entry.name: entry for entry in entry_points(group=GROUP)}


def names() -> list[str]:
    return sorted(_installed())


def command(name: str) -> Any:
    """The command `name` an installed part adds; None when none does."""
    entry = _installed().get(name)
    if entry is None:
        return None
    where = f"{entry.value}" + (f" of {entry.dist.name}" if entry.dist is not None else "")
    try:
        loaded = entry.load()
    except Exception as exc:  # a part installed without what its command needs: say so when it is used
        return _failing(name, f"the command {name} ({where}) cannot be loaded: {type(exc).__name__}: {exc}")
    if not isinstance(loaded, typer.Typer) and callable(loaded):
        try:
            loaded = loaded()
        except Exception as exc:
            return _failing(name, f"the command {name} ({where}) cannot be made: {type(exc).__name__}: {exc}")
    if not isinstance(loaded, typer.Typer):
        return _failing(name, f"the command {name} ({where}) is not a typer.Typer but a {type(loaded).__name__}")
    loaded_command = typer.main.get_command(loaded)
    loaded_command.name = name
    return loaded_command


def _failing(name: str, message: str) -> Any:
    broken = typer.Typer(add_completion=False)

    @broken.command(name=name, help=f"Unavailable: {message}", context_settings={"ignore_unknown_options": True})
    def fail(arguments: list[str] | None = typer.Argument(None, hidden=True)) -> None:  # noqa: B008
        raise CliError(message)

    loaded_command = typer.main.get_command(broken)
    loaded_command.name = name
    return loaded_command
