"""The SDK as an author installs it: its wheel alone, with the versions uv.lock pins, in a fresh environment.

Everything comes from uv's cache, which `make install` filled (hatchling to build, pydantic and the rest to
install): the test needs no network.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
UV = Path(sys.executable).parent / "uv"

# What an author's environment must not get from the SDK: the server's, the runner's, and the S3 helper's.
ABSENT = ["fastapi", "sqlalchemy", "sqlmodel", "nats", "boto3", "botocore", "httpx", "uvloop"]

CHECK = textwrap.dedent(
    """
    import importlib.util
    import json
    import sys

    import bifrost
    from bifrost import workflow, workflow_info

    @workflow(category="Demo")
    def double(n: int = 2):
        '''Double a number.'''
        return n * 2

    loaded_internal = sorted(name for name in sys.modules if name.startswith("bifrost._internal"))
    from bifrost._internal.s3 import connect_s3

    try:
        connect_s3()
        s3_error = None
    except ModuleNotFoundError as exc:
        s3_error = exc.name
    print(json.dumps({
        "file": bifrost.__file__,
        "schema": workflow_info(double).parameters_schema["properties"]["n"],
        "loaded_internal": loaded_internal,
        "s3_error": s3_error,
        "present": [name for name in sys.argv[1:] if importlib.util.find_spec(name) is not None],
    }))
    """
)


def run(*args: str | Path, cwd: Path = REPO_ROOT) -> str:
    env = {name: value for name, value in os.environ.items() if name not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["UV_OFFLINE"] = "1"
    done = subprocess.run([str(arg) for arg in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{' '.join(map(str, args))} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_the_sdk_wheel_installs_alone_and_serves_authors(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    run(UV, "build", "--package", "bifrost-sdk", "--wheel", "--out-dir", dist)
    [wheel] = dist.glob("bifrost_sdk-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        packages = {name.split("/")[0] for name in archive.namelist() if not name.startswith("bifrost_sdk-")}
    assert packages == {"bifrost"}

    pinned = tmp_path / "requirements.txt"
    run(UV, "export", "--package", "bifrost-sdk", "--frozen", "--no-dev", "--no-emit-workspace", "--no-hashes",
        "--output-file", pinned)  # fmt: skip
    venv = tmp_path / "venv"
    run(UV, "venv", "--python", sys.executable, venv)
    python = venv / "bin" / "python"
    run(UV, "pip", "install", "--python", python, "--requirement", pinned, wheel)

    # -I: neither this checkout nor PYTHONPATH is on the path; only what was installed is.
    report = run(python, "-I", "-c", CHECK, *ABSENT, cwd=tmp_path)
    result = json.loads(report)
    assert Path(result["file"]).is_relative_to(venv)
    assert result["schema"] == {"default": 2, "title": "N", "type": "integer"}
    assert result["loaded_internal"] == []
    assert result["s3_error"] == "boto3"
    assert result["present"] == []
