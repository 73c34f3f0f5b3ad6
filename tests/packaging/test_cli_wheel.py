"""The `bifrost` command as a CI pipeline installs it: the CLI's and the SDK's wheels alone, with the versions
uv.lock pins, in a fresh environment, without the server or the runner (and so without their commands)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from tests.packaging.test_sdk_wheel import UV, run

ABSENT = ["fastapi", "sqlalchemy", "sqlmodel", "nats", "boto3", "uvloop", "uvicorn", "control_plane", "bifrost_runner"]

# A row of the help's command table starts with the command's name.
COMMAND_ROW = re.compile(r"^│ (\w\S*) ", re.M)
FLOW = "from bifrost import workflow\n\n\n@workflow\ndef hello(name: str):\n    return name\n"


def test_the_cli_wheel_installs_alone_and_runs_without_the_server(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    for package in ("bifrost-sdk", "bifrost-cli"):
        run(UV, "build", "--package", package, "--wheel", "--out-dir", dist)
    wheels = sorted(dist.glob("*.whl"))
    pinned = tmp_path / "requirements.txt"
    run(UV, "export", "--package", "bifrost-cli", "--frozen", "--no-dev", "--no-emit-workspace", "--no-hashes",
        "--output-file", pinned)  # fmt: skip
    venv = tmp_path / "venv"
    run(UV, "venv", "--python", sys.executable, venv)
    python, command = venv / "bin" / "python", venv / "bin" / "bifrost"
    run(UV, "pip", "install", "--python", python, "--requirement", pinned, *wheels)

    present = run(python, "-I", "-c", "import importlib.util, json, sys; "
                  "print(json.dumps([n for n in sys.argv[1:] if importlib.util.find_spec(n)]))", *ABSENT)  # fmt: skip
    assert json.loads(present) == []

    listed = {match.group(1) for match in COMMAND_ROW.finditer(run(command, "--help", cwd=tmp_path))}
    core = {"run", "executions", "workflows", "keys", "schedules", "secrets", "config", "workspace", "discover"}
    assert listed == core | {"profile"}

    (tmp_path / "workspace").mkdir()
    (tmp_path / "workspace" / "flows.py").write_text(FLOW)
    found = json.loads(run(command, "discover", "workspace", "-o", "json", cwd=tmp_path))
    assert [workflow["name"] for workflow in found["workflows"]] == ["hello"]

    env = {"PATH": "/usr/bin:/bin", "BIFROST_URL": "http://127.0.0.1:9", "BIFROST_API_KEY": "bfk_unused"}
    unreachable = subprocess.run(
        [command, "run", "hello", "-p", "name=x"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert unreachable.returncode == 6, unreachable.stderr
    assert unreachable.stderr.startswith("bifrost: cannot reach Bifrost at http://127.0.0.1:9")
