"""Which server to talk to, as whom: options, a named profile, the environment.

A profile file (TOML, `$BIFROST_PROFILES_FILE`, else `$XDG_CONFIG_HOME/bifrost/profiles.toml`, else
`~/.config/bifrost/profiles.toml`) names servers:

    default = "prod"

    [profiles.prod]
    url = "https://bifrost.example.com"
    api_key = "bfk_..."
    org = "..."          # optional: the organization to act for

What is given explicitly wins; then the profile chosen by name (`profile=`, or `$BIFROST_PROFILE`); then
`$BIFROST_URL`, `$BIFROST_API_KEY` and `$BIFROST_ORG`; then, when no URL was given either way, the file's
default profile (so a profile's key never goes to another server).
"""

from __future__ import annotations

import os
import stat
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from bifrost.client.errors import BifrostError


class ProfileError(BifrostError):
    """The profile file, or the profile asked for, is wrong or missing; or no server is named at all."""


@dataclass(frozen=True)
class Profile:
    url: str | None = None
    api_key: str | None = None
    org: str | None = None


@dataclass(frozen=True)
class Connection:
    """Where the client connects, with which key, acting for which organization."""

    url: str
    api_key: str | None
    org: str | None
    profile: str | None
    """The profile it came from, if any."""


def profiles_file(environ: Mapping[str, str] = os.environ) -> Path:
    if environ.get("BIFROST_PROFILES_FILE"):
        return Path(environ["BIFROST_PROFILES_FILE"])
    config_home = environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config_home) / "bifrost" / "profiles.toml"


def read_profiles(path: Path) -> tuple[dict[str, Profile], str | None]:
    """The profiles of the file and the name of its default one; none when there is no file."""
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}, None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ProfileError(f"cannot read the profile file {path}: {exc}") from exc
    profiles: dict[str, Profile] = {}
    tables = document.get("profiles", {})
    if not isinstance(tables, dict):
        raise ProfileError(f"{path}: `profiles` must be a table of profiles, as in [profiles.prod]")
    for name, table in tables.items():
        if not isinstance(table, dict):
            raise ProfileError(f"{path}: profile {name!r} must be a table, as in [profiles.{name}]")
        unknown = sorted(set(table) - {"url", "api_key", "org"})
        if unknown:
            raise ProfileError(f"{path}: profile {name!r} has unknown keys {unknown} (known: url, api_key, org)")
        values = {key: table.get(key) for key in ("url", "api_key", "org")}
        for key, value in values.items():
            if value is not None and not isinstance(value, str):
                raise ProfileError(f"{path}: {key} of profile {name!r} must be a string")
        profiles[name] = Profile(**values)
    default = document.get("default")
    if default is not None and (not isinstance(default, str) or default not in profiles):
        raise ProfileError(f"{path}: default = {default!r} names no profile of the file")
    return profiles, default


def write_profile(path: Path, name: str, profile: Profile, *, make_default: bool) -> None:
    """Add or replace one profile, readable by its owner only (it holds an API key)."""
    profiles, default = read_profiles(path)
    profiles[name] = profile
    if make_default or default is None:
        default = name
    lines = [f"default = {_toml_string(default)}", ""]
    for each, values in sorted(profiles.items()):
        lines.append(f"[profiles.{_toml_string(each)}]")
        for key in ("url", "api_key", "org"):
            value = getattr(values, key)
            if value is not None:
                lines.append(f"{key} = {_toml_string(value)}")
        lines.append("")
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write("\n".join(lines))
    os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)


def _toml_string(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + "".join(f"\\u{ord(c):04x}" if ord(c) < 0x20 or ord(c) == 0x7F else c for c in escaped) + '"'


def resolve(
    *,
    url: str | None = None,
    api_key: str | None = None,
    org: str | None = None,
    profile: str | None = None,
    environ: Mapping[str, str] = os.environ,
) -> Connection:
    """The connection the arguments, the profile file and the environment make (see the module's doc)."""
    path = profiles_file(environ)
    profiles, default = read_profiles(path)
    chosen = profile or environ.get("BIFROST_PROFILE") or None
    if chosen is not None:
        if chosen not in profiles:
            known = ", ".join(sorted(profiles)) or "none"
            raise ProfileError(f"no profile {chosen!r} in {path} (profiles there: {known})")
        named = profiles[chosen]
        layers = [Profile(url, api_key, org), named]
    else:
        from_environment = Profile(
            url=environ.get("BIFROST_URL") or None,
            api_key=environ.get("BIFROST_API_KEY") or None,
            org=environ.get("BIFROST_ORG") or None,
        )
        layers = [Profile(url, api_key, org), from_environment]
        # A profile's key goes only to its own server: never to a URL given otherwise.
        if default is not None and url is None and from_environment.url is None:
            chosen = default
            layers.append(profiles[default])
    chosen_url = _first(layer.url for layer in layers)
    if chosen_url is None:
        raise ProfileError(
            f"no Bifrost server named: set BIFROST_URL (and BIFROST_API_KEY), or add a profile to {path}"
        )
    if not chosen_url.startswith(("http://", "https://")):
        raise ProfileError(f"the server URL {chosen_url!r} must start with http:// or https://")
    return Connection(
        url=chosen_url.rstrip("/"),
        api_key=_first(layer.api_key for layer in layers),
        org=_first(layer.org for layer in layers),
        profile=chosen,
    )


def _first(values: Iterable[str | None]) -> str | None:
    return next((value for value in values if value), None)
