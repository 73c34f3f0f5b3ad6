"""The commands the server adds to `bifrost` (entry points of the group `bifrost.cli`, see bifrost_cli.plugins):
`serve`, `nats-config` and `admin`. Each imports the server's code only when it runs, so that `bifrost --help`
lists them without loading FastAPI or SQLAlchemy."""

from __future__ import annotations

import getpass
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

if TYPE_CHECKING:
    from control_plane.settings import Settings

console = Console(stderr=True, soft_wrap=True)

serve = typer.Typer(add_completion=False)
nats_config = typer.Typer(add_completion=False)
admin = typer.Typer(add_completion=False)


def _settings(**overrides: object) -> Settings:
    from control_plane.settings import Settings

    try:
        return Settings().model_copy(update=overrides)
    except ValueError as exc:  # pydantic's ValidationError included: it names each wrong BIFROST_* setting
        console.print(f"[red]Invalid configuration:[/red] {exc}")
        raise typer.Exit(2) from exc


@nats_config.command("nats-config")
def print_nats_config(
    account_seed: Annotated[
        bool, typer.Option("--account-seed", help="Print the account's seed, for BIFROST_NATS_ACCOUNT_SEED.")
    ] = False,
) -> None:
    """Print the accounts part of an external nats-server's configuration.

    The operator, accounts and resolver, which make the server give every runner an identity of its own. The
    keys are kept in the data folder, made on first use: the same folder gives the same identities.
    """
    from control_plane.security.nats_identities import KEYS_FILE, NatsKeys

    try:
        keys = NatsKeys.load_or_create(_settings().data_dir / KEYS_FILE)
    except ValueError as exc:  # a keys file that is not ours
        console.print(f"[red]Invalid configuration:[/red] {exc}")
        raise typer.Exit(2) from exc
    typer.echo(keys.account if account_seed else keys.server_config(), nl=account_seed)


@serve.command("serve")
def start_serving(
    host: Annotated[str | None, typer.Option(help="Interface to listen on (default: BIFROST_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on (default: BIFROST_PORT).")] = None,
) -> None:
    """Start the control plane: API, registry, queue and runners, with every default embedded."""
    import uvicorn

    from control_plane.app import create_app

    overrides = {key: value for key, value in (("host", host), ("port", port)) if value is not None}
    settings = _settings(**overrides)
    try:
        workspace = settings.workspace_dir or settings.workspace_url
    except ValueError as exc:
        console.print(f"[red]Invalid configuration:[/red] {exc}")
        raise typer.Exit(2) from exc
    out = Console(soft_wrap=True)  # a long workspace path stays whole, to copy from the log
    out.print(f"Bifrost at [bold]{settings.api_url}[/bold]")
    out.print(f"Workspace: {workspace}")
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="info")


@admin.callback()
def administration() -> None:
    """Administration on the control plane's host, against its database (the BIFROST_* settings of `serve`)."""


@admin.command("create-key")
def create_key(
    email: Annotated[
        str | None, typer.Option(help="The platform admin's email, when there are several.", show_default=False)
    ] = None,
    name: Annotated[str, typer.Option(help="The key's name.")] = "recovery",
) -> None:
    """Make a new API key of a platform admin, for when no admin key is left.

    Recorded in the audit log. The key is printed once, alone on stdout.
    """
    from sqlalchemy import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from bifrost_cli.exits import CliError, ExitCode
    from control_plane.db.session import make_engine
    from control_plane.errors import RefusedError
    from control_plane.security.api_keys import create_admin_key

    settings = _settings()
    url = make_url(settings.resolved_database_url)
    if url.get_backend_name() == "sqlite" and url.database and not Path(url.database).exists():
        raise CliError(f"no Bifrost database at {url.database}: run this where `bifrost serve` runs, with its settings")
    db = make_engine(settings.resolved_database_url)
    try:
        key, stored, admin_email = create_admin_key(
            db, email=email, name=name, origin=f"{getpass.getuser()}@{socket.gethostname()}"
        )
    except RefusedError as exc:
        raise CliError(str(exc)) from exc
    except SQLAlchemyError as exc:
        where = url.render_as_string(hide_password=True)
        raise CliError(f"the database {where} refused: {exc.args[0]}", ExitCode.CONNECTION) from exc
    finally:
        db.dispose()
    console.print(f"Key {stored.id} ({stored.prefix}…) of {admin_email} made; it is shown only this once:")
    typer.echo(key)
