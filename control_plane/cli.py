"""The `bifrost` command."""

from __future__ import annotations

from typing import Annotated

import typer
import uvicorn
from rich.console import Console

from control_plane.app import create_app
from control_plane.security.nats_identities import KEYS_FILE, NatsKeys
from control_plane.settings import Settings

app = typer.Typer(no_args_is_help=True)
console = Console()


@app.callback()
def main() -> None:
    """Bifrost: run plain Python workflows for operations teams."""


@app.command("nats-config")
def nats_config(
    account_seed: Annotated[
        bool, typer.Option("--account-seed", help="Print the account's seed, for BIFROST_NATS_ACCOUNT_SEED.")
    ] = False,
) -> None:
    """Print the accounts part of an external nats-server's configuration (operator, accounts, resolver), which
    makes the server give every runner an identity of its own. The keys are kept in the data folder, made on
    first use: the same folder gives the same identities."""
    try:
        keys = NatsKeys.load_or_create(Settings().data_dir / KEYS_FILE)
    except ValueError as exc:  # a wrong BIFROST_* setting, or a keys file that is not ours
        console.print(f"[red]Invalid configuration:[/red] {exc}")
        raise typer.Exit(2) from exc
    typer.echo(keys.account if account_seed else keys.server_config(), nl=account_seed)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to listen on (default: BIFROST_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on (default: BIFROST_PORT).")] = None,
) -> None:
    """Start the control plane: API, registry, queue and runners, with every default embedded."""
    overrides = {key: value for key, value in (("host", host), ("port", port)) if value is not None}
    try:
        settings = Settings().model_copy(update=overrides)
        workspace = settings.workspace_dir or settings.workspace_url
    except ValueError as exc:  # pydantic's ValidationError included: it names each wrong BIFROST_* setting
        console.print(f"[red]Invalid configuration:[/red] {exc}")
        raise typer.Exit(2) from exc
    console.print(f"Bifrost at [bold]{settings.api_url}[/bold]")
    console.print(f"Workspace: {workspace}")
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="info")
