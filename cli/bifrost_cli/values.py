"""`bifrost secrets` and `bifrost config`: what workflows read. Values come from stdin or a file, never from the
command line, where other users and the shell's history would see them."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from bifrost_cli import output
from bifrost_cli.exits import CliError
from bifrost_cli.options import OrgOption, Output, OutputOption, ProfileOption, connect

secrets = typer.Typer(name="secrets", help="Secrets workflows read: set and list them (their values never come back).")
config = typer.Typer(name="config", help="Config entries workflows read: JSON values, per organization or global.")

NameArgument = Annotated[str, typer.Argument(help="Letters, digits, _, . and -.", show_default=False)]
FromFileOption = Annotated[
    Path | None,
    typer.Option(
        "--from-file", help="Read the value from this file (default: stdin; a terminal asks).", show_default=False
    ),
]
GlobalOption = Annotated[
    bool, typer.Option("--global", help="The global entry every organization falls back to (platform admins).")
]


def read_value(from_file: Path | None, *, what: str, hidden: bool) -> str:
    """The value from the file, or from stdin (asked for on a terminal); one trailing newline is dropped."""
    if from_file is not None:
        try:
            text = from_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CliError(f"cannot read {what} from {from_file}: {exc}") from exc
    elif sys.stdin.isatty():
        text = typer.prompt(what.capitalize(), hide_input=hidden, err=True)
    else:
        text = sys.stdin.read()
    text = text.removesuffix("\n").removesuffix("\r")
    if not text:
        raise CliError(f"the {what} is empty")
    return text


def _scope(org_id: str | None) -> str:
    return "global" if org_id is None else org_id


@secrets.command("list")
def list_secrets(
    org: OrgOption = None, profile: ProfileOption = None, output_format: OutputOption = Output.TABLE
) -> None:
    """The secrets of the organization acted for and the global ones, without their values."""
    with connect(profile, org) as client:
        found = client.list_secrets()
    output.listing(
        output_format,
        found,
        ("NAME", "SCOPE", "UPDATED", "BY"),
        lambda s: (s.name, _scope(s.org_id), output.when(s.updated_at), s.updated_by),
        empty="no secrets",
    )


@secrets.command("set")
def set_secret(
    name: NameArgument,
    from_file: FromFileOption = None,
    global_scope: GlobalOption = False,
    org: OrgOption = None,
    profile: ProfileOption = None,
    output_format: OutputOption = Output.TABLE,
) -> None:
    """Create or replace a secret.

    Of the organization acted for (or global); its value from stdin (a terminal asks) or --from-file.
    """
    value = read_value(from_file, what="secret value", hidden=True)
    with connect(profile, org) as client:
        stored = client.set_secret(name, value, global_scope=global_scope)
    if output_format == "json":
        output.print_json(stored)
    else:
        output.note(f"Secret {stored.name} set ({_scope(stored.org_id)})")


@secrets.command("delete")
def delete_secret(
    name: NameArgument, global_scope: GlobalOption = False, org: OrgOption = None, profile: ProfileOption = None
) -> None:
    with connect(profile, org) as client:
        client.delete_secret(name, global_scope=global_scope)
    output.note(f"Secret {name} deleted")


@config.command("list")
def list_config(
    org: OrgOption = None, profile: ProfileOption = None, output_format: OutputOption = Output.TABLE
) -> None:
    """The config entries of the organization acted for and the global ones."""
    with connect(profile, org) as client:
        found = client.list_config()
    output.listing(
        output_format,
        found,
        ("NAME", "VALUE", "SCOPE", "UPDATED"),
        lambda c: (c.name, json.dumps(c.value, ensure_ascii=False), _scope(c.org_id), output.when(c.updated_at)),
        empty="no config entries",
    )


@config.command("get")
def get_config(name: NameArgument, org: OrgOption = None, profile: ProfileOption = None) -> None:
    """A config entry's value, as JSON.

    The value a workflow of the organization acted for reads: its own entry, else the global one.
    """
    with connect(profile, org) as client:
        entry = client.get_config(name)
    output.print_json(entry.value)


@config.command("set")
def set_config(
    name: NameArgument,
    from_file: FromFileOption = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="The value is JSON (default: text, stored as a string).")
    ] = False,
    global_scope: GlobalOption = False,
    org: OrgOption = None,
    profile: ProfileOption = None,
    output_format: OutputOption = Output.TABLE,
) -> None:
    """Create or replace a config entry.

    Of the organization acted for (or global); its value from stdin (a terminal asks) or --from-file.
    """
    text = read_value(from_file, what="config value", hidden=False)
    value: Any = text
    if as_json:
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise CliError(f"--json: the value is not JSON: {exc}") from exc
    with connect(profile, org) as client:
        stored = client.set_config(name, value, global_scope=global_scope)
    if output_format == "json":
        output.print_json(stored)
    else:
        output.note(f"Config entry {stored.name} set ({_scope(stored.org_id)})")


@config.command("delete")
def delete_config(
    name: NameArgument, global_scope: GlobalOption = False, org: OrgOption = None, profile: ProfileOption = None
) -> None:
    with connect(profile, org) as client:
        client.delete_config(name, global_scope=global_scope)
    output.note(f"Config entry {name} deleted")
