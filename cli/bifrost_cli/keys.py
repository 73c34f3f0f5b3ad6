"""`bifrost keys`: API keys."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer

from bifrost_cli import output
from bifrost_cli.exits import CliError
from bifrost_cli.options import OrgOption, Output, OutputOption, ProfileOption, connect

app = typer.Typer(name="keys", help="API keys: yours, and the service keys of the organization you administer.")

_DURATION = re.compile(r"^(\d+)([dhm])$")
_UNITS = {"d": "days", "h": "hours", "m": "minutes"}


@app.command("list")
def list_keys(org: OrgOption = None, profile: ProfileOption = None, output_format: OutputOption = Output.TABLE) -> None:
    """Your keys, and for organization admins the organization's service keys; never the keys themselves."""
    with connect(profile, org) as client:
        keys = client.list_keys()
    output.listing(
        output_format,
        keys,
        ("ID", "NAME", "PREFIX", "BOUND TO", "CREATED", "EXPIRES", "LAST USED", "REVOKED"),
        lambda k: (
            k.id,
            k.name,
            k.prefix,
            k.org_id,
            output.when(k.created_at),
            output.when(k.expires_at),
            output.when(k.last_used_at),
            output.when(k.revoked_at),
        ),
        empty="no keys",
    )


@app.command()
def create(
    name: Annotated[str, typer.Argument(help="What the key is for.", show_default=False)],
    expires: Annotated[
        str | None,
        typer.Option(
            help="When it stops working: 30d, 12h, 90m, or an ISO 8601 time with its zone.", show_default=False
        ),
    ] = None,
    bind_org: Annotated[
        str | None, typer.Option("--bind-org", help="Let the key act only for this organization.", show_default=False)
    ] = None,
    service: Annotated[
        bool,
        typer.Option(
            "--service", help="A service key of the organization acted for, held by a new service account (admins)."
        ),
    ] = False,
    role: Annotated[
        str, typer.Option(help="A service key's role in the organization: member or org_admin.")
    ] = "member",
    org: OrgOption = None,
    profile: ProfileOption = None,
    output_format: OutputOption = Output.TABLE,
) -> None:
    """Make a key.

    The key is printed once, alone on stdout; store it now.
    """
    from bifrost.api import OrgRole

    expires_at = _expiry(expires)
    if service and bind_org is not None:
        raise CliError("--bind-org is for personal keys: a service key is bound to the organization acted for (--org)")
    if not service and role != "member":
        raise CliError("--role is for service keys (--service)")
    if role not in {r.value for r in OrgRole}:
        raise CliError(f"--role {role!r}: use member or org_admin")
    with connect(profile, org) as client:
        if service:
            created = client.create_service_key(name, role=OrgRole(role), expires_at=expires_at)
        else:
            created = client.create_key(name, expires_at=expires_at, org_id=bind_org)
    if output_format == "json":
        output.print_json(created)
        return
    output.note(f"Key {created.id} ({created.prefix}…) made; it is shown only this once:")
    print(created.key)


@app.command()
def revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (see `bifrost keys list`).", show_default=False)],
    org: OrgOption = None,
    profile: ProfileOption = None,
) -> None:
    """Revoke a key: it stops working at once."""
    with connect(profile, org) as client:
        client.revoke_key(key_id)
    output.note(f"Key {key_id} revoked")


def _expiry(text: str | None) -> datetime | None:
    if text is None:
        return None
    duration = _DURATION.match(text)
    if duration:
        amount, unit = duration.groups()
        return datetime.now(UTC) + timedelta(**{_UNITS[unit]: int(amount)})
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise CliError(f"--expires {text!r}: give a duration (30d, 12h, 90m) or an ISO 8601 time") from None
    if when.tzinfo is None:
        raise CliError(f"--expires {text!r}: give the time zone too, as in 2027-01-31T18:00:00+01:00")
    return when
