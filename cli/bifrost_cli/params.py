"""A workflow's parameters from the command line: `-p name=value` (text, which the server converts to the
parameter's type), `-p name:=JSON` (any JSON value: a list, an object, null), and `--params-file` (a JSON
object); `-p` wins over the file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bifrost_cli.exits import CliError


def parse_parameters(pairs: list[str], params_file: Path | None) -> dict[str, Any]:
    parameters: dict[str, Any] = {}
    if params_file is not None:
        try:
            loaded = json.loads(params_file.read_text(encoding="utf-8"))
        except OSError as exc:
            raise CliError(f"cannot read the parameters file {params_file}: {exc.strerror}") from exc
        except (UnicodeDecodeError, ValueError) as exc:
            raise CliError(f"the parameters file {params_file} is not JSON: {exc}") from exc
        if not isinstance(loaded, dict):
            raise CliError(f"the parameters file {params_file} must hold a JSON object, not {type(loaded).__name__}")
        parameters.update(loaded)
    for pair in pairs:
        name, value = _pair(pair)
        parameters[name] = value
    return parameters


def _pair(pair: str) -> tuple[str, Any]:
    name, separator, text = pair.partition("=")
    if not separator or not name or name == ":":
        raise CliError(f"-p {pair!r}: give a parameter as name=value, or name:=JSON")
    if not name.endswith(":"):
        return name, text
    try:
        return name[:-1], json.loads(text)
    except ValueError as exc:
        raise CliError(f"-p {pair!r}: the value after := is not JSON: {exc}") from exc
