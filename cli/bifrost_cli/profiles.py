"""`bifrost profile`: the named servers of the profile file."""

from __future__ import annotations

from typing import Annotated

import typer

from bifrost_cli import output
from bifrost_cli.exits import CliError
from bifrost_cli.options import Output, OutputOption

app = typer.Typer(name="profile", help="Named servers, with their API keys, in the profile file.")


@app.command("list")
def list_profiles(output_format: OutputOption = Output.TABLE) -> None:
    """The profiles of the profile file (without their keys), the default one marked."""
    from bifrost.client.profiles import profiles_file, read_profiles

    path = profiles_file()
    profiles, default = read_profiles(path)
    if output_format == "json":
        output.print_json(
            [
                {
                    "name": name,
                    "url": p.url,
                    "org": p.org,
                    "has_api_key": p.api_key is not None,
                    "default": name == default,
                }
                for name, p in sorted(profiles.items())
            ]
        )
        return
    output.note(f"Profile file: {path}")
    output.table(
        ("", "NAME", "URL", "ORG", "KEY"),
        [
            ("*" if name == default else "", name, p.url, p.org, "yes" if p.api_key else "")
            for name, p in sorted(profiles.items())
        ],
        empty="no profiles",
    )


@app.command("set")
def set_profile(
    name: Annotated[str, typer.Argument(help="The profile's name.", show_default=False)],
    url: Annotated[str, typer.Option(help="The server's URL.", show_default=False)],
    org: Annotated[str | None, typer.Option(help="The organization to act for.", show_default=False)] = None,
    default: Annotated[bool, typer.Option("--default", help="Make it the default profile.")] = False,
    no_key: Annotated[bool, typer.Option("--no-key", help="Keep no API key in the profile.")] = False,
) -> None:
    """Add or replace a profile.

    Its API key is read from stdin (a terminal asks), never from the command line. The file is readable by you
    alone.
    """
    from bifrost.client.profiles import Profile, profiles_file, write_profile
    from bifrost_cli.values import read_value

    if not url.startswith(("http://", "https://")):
        raise CliError(f"--url {url!r}: give the server's URL, starting with http:// or https://")
    api_key = None if no_key else read_value(None, what="API key", hidden=True)
    path = profiles_file()
    write_profile(path, name, Profile(url=url.rstrip("/"), api_key=api_key, org=org), make_default=default)
    output.note(f"Profile {name} saved in {path}")
