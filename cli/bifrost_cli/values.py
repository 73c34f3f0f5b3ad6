"""`bifrost secrets` and `bifrost config`: what workflows read. Values come from stdin or a file, never from the
command line, where other users and the shell's history would see them."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Generic, TypeVar

import typer

from bifrost_cli import output
from bifrost_cli.exits import CliError
from bifrost_cli.options import OrgOption, Output, OutputOption, ProfileOption, connect

if TYPE_CHECKING:
    from bifrost.api import ConfigOut, SecretOut
    from bifrost.client import Client

secrets = typer.Typer(name="secrets", help="Secrets workflows read: set and list them (their values never come back).")
config = typer.Typer(name="config", help="Config entries workflows read: JSON values, per organization or global.")

NameArgument = Annotated[str, typer.Argument(help="Letters, digits, _, . and -.", show_default=False)]
FromFileOption = Annotated[
    Path | None,
    typer.Option(
        "--from-file", help="Read the value from this file (default: stdin; a terminal asks).", show_default=False
    ),
]


Entry = TypeVar("Entry", "SecretOut", "ConfigOut")

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


@dataclass(frozen=True)
class _Kind(Generic[Entry]):
    """What tells secrets and config entries apart; the commands are the same."""

    noun: str
    """As a sentence starts with it: `Secret`, `Config entry`."""
    list_help: str
    empty: str
    """What `list` says when there is nothing to list."""
    listed: Callable[[Client], list[Entry]]
    columns: tuple[str, ...]
    row: Callable[[Entry], tuple[Any, ...]]
    stored: Callable[[Client, str, Any, bool], Entry]
    deleted: Callable[[Client, str, bool], None]

    def add_commands(self, app: typer.Typer) -> None:
        """`list` and `delete`; `set` asks for its value each its own way, and `store`s it."""

        @app.command("list", help=self.list_help)
        def list_entries(
            org: OrgOption = None, profile: ProfileOption = None, output_format: OutputOption = Output.TABLE
        ) -> None:
            with connect(profile, org) as client:
                found = self.listed(client)
            output.listing(output_format, found, self.columns, self.row, empty=self.empty)

        @app.command("delete")
        def delete(
            name: NameArgument, global_scope: GlobalOption = False, org: OrgOption = None, profile: ProfileOption = None
        ) -> None:
            with connect(profile, org) as client:
                self.deleted(client, name, global_scope)
            output.note(f"{self.noun} {name} deleted")

    def store(
        self, name: str, value: Any, *, global_scope: bool, org: str | None, profile: str | None, output_format: Output
    ) -> None:
        with connect(profile, org) as client:
            stored = self.stored(client, name, value, global_scope)
        if output_format == "json":
            output.print_json(stored)
        else:
            output.note(f"{self.noun} {stored.name} set ({_scope(stored.org_id)})")


SECRETS: _Kind[SecretOut] = _Kind(
    noun="Secret",
    list_help="The secrets of the organization acted for and the global ones, without their values.",
    listed=lambda client: client.list_secrets(),
    empty="no secrets",
    columns=("NAME", "SCOPE", "UPDATED", "BY"),
    row=lambda s: (s.name, _scope(s.org_id), output.when(s.updated_at), s.updated_by),
    stored=lambda client, name, value, global_scope: client.set_secret(name, value, global_scope=global_scope),
    deleted=lambda client, name, global_scope: client.delete_secret(name, global_scope=global_scope),
)
CONFIG: _Kind[ConfigOut] = _Kind(
    noun="Config entry",
    list_help="The config entries of the organization acted for and the global ones.",
    listed=lambda client: client.list_config(),
    empty="no config entries",
    columns=("NAME", "VALUE", "SCOPE", "UPDATED"),
    row=lambda c: (c.name, json.dumps(c.value, ensure_ascii=False), _scope(c.org_id), output.when(c.updated_at)),
    stored=lambda client, name, value, global_scope: client.set_config(name, value, global_scope=global_scope),
    deleted=lambda client, name, global_scope: client.delete_config(name, global_scope=global_scope),
)
SECRETS.add_commands(secrets)
CONFIG.add_commands(config)


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
    SECRETS.store(name, value, global_scope=global_scope, org=org, profile=profile, output_format=output_format)


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
    CONFIG.store(name, value, global_scope=global_scope, org=org, profile=profile, output_format=output_format)
