"""Options many commands share, and the client they make."""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from bifrost.client import Client


class Output(enum.StrEnum):
    TABLE = "table"
    JSON = "json"


ProfileOption = Annotated[
    str | None,
    typer.Option(
        "--profile",
        help="A profile of the profile file (default: $BIFROST_PROFILE, else $BIFROST_URL and $BIFROST_API_KEY, "
        "else the file's default profile).",
        show_default=False,
    ),
]
OrgOption = Annotated[
    str | None,
    typer.Option(
        "--org", help="The organization to act for (default: the profile's, else the key's).", show_default=False
    ),
]
OutputOption = Annotated[
    Output, typer.Option("--output", "-o", help="`table` for people, `json` for programs.", case_sensitive=False)
]


def connect(profile: str | None, org: str | None) -> Client:
    """A client for the server the options, the profile file and the environment name."""
    from bifrost.client import Client
    from bifrost.client.profiles import resolve

    return Client.of(resolve(profile=profile, org=org))
