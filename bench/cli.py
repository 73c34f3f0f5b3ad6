"""The `bifrost` command's start-up, as a CI job pays it on every call:

1. `bifrost --help`: the process from start to exit, median and p90 over 15 calls; in this development
   environment (the server and the runner installed, whose commands the help lists too), and in a fresh one with
   only what `pip install bifrost-cli` brings (built from the lock, offline, as tests/packaging does);
2. `bifrost run` of a trivial sync workflow against `bifrost serve`, process start to exit, median and p90 over
   20 calls, beside the same request made from a Python process that is already running (what is left is the
   command's own cost).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from bench._report import measured, print_figures
from bench.executions import KEY, WORKFLOWS, serving
from bifrost_devtools.services import free_port

HELP_CALLS = 15
RUN_CALLS = 20
REPO_ROOT = Path(__file__).resolve().parents[1]


def timed(count: int, call: Callable[[], object]) -> str:
    call()  # once first: Python writes the bytecode of what it imported, as an installed package has it
    durations = []
    for _ in range(count):
        started = time.perf_counter()
        call()
        durations.append((time.perf_counter() - started) * 1000)
    durations.sort()
    p90 = durations[min(len(durations) - 1, round(0.9 * len(durations)) - 1)]
    return measured(f"median {statistics.median(durations):.0f} ms, p90 {p90:.0f} ms")


def without_bytecode_opt_out(env: dict[str, str]) -> dict[str, str]:
    """`env` without PYTHONDONTWRITEBYTECODE: installed packages come with their bytecode (pip compiles it), and
    a command that recompiled every module on each start would measure the compiler."""
    return {name: value for name, value in env.items() if name != "PYTHONDONTWRITEBYTECODE"}


def command(executable: Path, *arguments: str, env: dict[str, str] | None = None) -> None:
    env = without_bytecode_opt_out(dict(os.environ) if env is None else env)
    done = subprocess.run([executable, *arguments], env=env, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"bifrost {' '.join(arguments)} exited {done.returncode}: {done.stderr[-2000:]}")


def cli_only_environment(tmp: Path) -> Path:
    """A fresh environment with the CLI's and the SDK's wheels and their locked dependencies; its `bifrost`."""
    uv = Path(sys.executable).parent / "uv"
    env = {name: value for name, value in os.environ.items() if name not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["UV_OFFLINE"] = "1"

    def uv_run(*arguments: str | Path) -> None:
        subprocess.run([uv, *arguments], cwd=REPO_ROOT, env=env, check=True, capture_output=True, timeout=300)

    for package in ("bifrost-sdk", "bifrost-cli"):
        uv_run("build", "--package", package, "--wheel", "--out-dir", tmp / "dist")
    uv_run("export", "--package", "bifrost-cli", "--frozen", "--no-dev", "--no-emit-workspace", "--no-hashes",
           "--output-file", tmp / "requirements.txt")  # fmt: skip
    uv_run("venv", "--python", sys.executable, tmp / "venv")
    uv_run("pip", "install", "--compile-bytecode", "--python", tmp / "venv" / "bin" / "python",
           "--requirement", tmp / "requirements.txt", *sorted((tmp / "dist").glob("*.whl")))  # fmt: skip
    return tmp / "venv" / "bin" / "bifrost"


def main() -> None:
    figures: dict[str, str] = {}
    development = Path(sys.executable).with_name("bifrost")
    figures["1. bifrost --help, development environment (server and runner installed)"] = timed(
        HELP_CALLS, lambda: command(development, "--help")
    )
    with tempfile.TemporaryDirectory(prefix="bifrost-bench-cli-") as tmp:
        alone = cli_only_environment(Path(tmp))
        figures["1. bifrost --help, bifrost-cli alone"] = timed(HELP_CALLS, lambda: command(alone, "--help"))

        workspace = Path(tmp) / "workspace"
        workspace.mkdir()
        (workspace / "flows.py").write_text(WORKFLOWS)
        port = free_port()
        api_url = f"http://127.0.0.1:{port}"
        server_env = {
            "BIFROST_DATA_DIR": str(Path(tmp) / "data"),
            "BIFROST_WORKSPACE_URL": str(workspace),
            "BIFROST_PORT": str(port),
            "BIFROST_BOOTSTRAP_API_KEY": KEY,
        }
        client_env = {name: value for name, value in os.environ.items() if not name.startswith("BIFROST_")}
        client_env |= {"BIFROST_URL": api_url, "BIFROST_API_KEY": KEY, "BIFROST_PROFILES_FILE": os.devnull}
        with (
            serving(server_env, api_url, Path(tmp) / "bifrost-serve.log"),
            httpx.Client(base_url=api_url, headers={"Authorization": f"Bearer {KEY}"}, timeout=60) as api,
        ):

            def request() -> None:
                api.post("/api/workflows/trivial/execute", json={"parameters": {"n": 1}}).raise_for_status()

            request()  # the first run of a revision builds its checkout
            figures["2. the same sync run as one HTTP request from a running process"] = timed(RUN_CALLS, request)
            figures["2. bifrost run trivial -p n=1, bifrost-cli alone"] = timed(
                RUN_CALLS, lambda: command(alone, "run", "trivial", "-p", "n=1", env=client_env)
            )
            figures["2. bifrost run trivial -p n=1, development environment"] = timed(
                RUN_CALLS, lambda: command(development, "run", "trivial", "-p", "n=1", env=client_env)
            )
    print_figures(figures)


if __name__ == "__main__":
    main()
