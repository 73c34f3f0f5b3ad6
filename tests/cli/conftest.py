"""`bifrost serve` as a user starts it, and the `bifrost` command run against it as a CI job runs it: both as
processes of their own."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from bifrost_devtools.services import free_port
from tests.api.conftest import eventually

BIFROST = str(Path(sys.executable).parent / "bifrost")
ADMIN_KEY = "bfk_cli-suite-admin-key-0123456789"

FLOWS = '''
import asyncio
import logging

from bifrost import context, workflow, workflows

log = logging.getLogger(__name__)


@workflow(execution_mode="sync")
def add(a: int, b: int = 1):
    """Add two numbers."""
    return {"sum": a + b}


@workflow
async def ticks(count: int = 5, pause: float = 0.0):
    """Log `count` lines."""
    for i in range(count):
        log.info("tick %d", i)
        await asyncio.sleep(pause)
    return count


@workflow
def explode():
    raise RuntimeError("disk on fire")


@workflow
async def soft_fail():
    return {"success": False, "error": "the remote system refused the change"}


@workflow(timeout_seconds=1)
async def too_slow():
    await asyncio.sleep(60)


@workflow
async def nap(seconds: float = 60):
    await asyncio.sleep(seconds)


@workflow(max_concurrency=1)
async def one_at_a_time(seconds: float = 60):
    await asyncio.sleep(seconds)


@workflow
async def secret_length(name: str):
    value = await context.get_secret(name)
    setting = await context.get_config("greeting")
    return {"length": None if value is None else len(value), "greeting": setting}
'''


@dataclass
class Server:
    url: str
    port: int
    data_dir: Path
    workspace: Path

    def environment(self, key: str | None = ADMIN_KEY, url: str | None = None) -> dict[str, str]:
        """What a CI job gives the command: the server and a key, nothing else of Bifrost's."""
        env = {name: value for name, value in os.environ.items() if not name.startswith("BIFROST_")}
        env["BIFROST_URL"] = url or self.url
        env["BIFROST_PROFILES_FILE"] = str(self.data_dir.parent / "no-profiles.toml")
        if key is not None:
            env["BIFROST_API_KEY"] = key
        return env

    def server_environment(self) -> dict[str, str]:
        """The settings `bifrost serve` runs with, as on its host."""
        env = {name: value for name, value in os.environ.items() if not name.startswith("BIFROST_")}
        return env | {"BIFROST_DATA_DIR": str(self.data_dir), "BIFROST_WORKSPACE_URL": str(self.workspace)}

    def api(self, key: str = ADMIN_KEY) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {key}"}, timeout=60)


@pytest.fixture(scope="package")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("served")
    workspace = root / "workspace"
    workspace.mkdir()
    (workspace / "flows.py").write_text(FLOWS)
    port = free_port()
    served = Server(url=f"http://127.0.0.1:{port}", port=port, data_dir=root / "data", workspace=workspace)
    env = served.server_environment() | {
        "BIFROST_PORT": str(port),
        "BIFROST_BOOTSTRAP_API_KEY": ADMIN_KEY,
        "BIFROST_LOCAL_POOL_SIZE": "1",
        "BIFROST_WORKSPACE_POLL_SECONDS": "0.2",
    }
    log = (root / "serve.log").open("w")
    process = subprocess.Popen([BIFROST, "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        eventually(lambda: _ready(served.url) or process.poll() is not None, within=90, what="bifrost serve")
        assert process.poll() is None, (root / "serve.log").read_text()
        yield served
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)
        log.close()


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=5).status_code == 200
    except httpx.TransportError:
        return False


def bifrost(
    *args: str, env: dict[str, str], stdin: str | None = None, cwd: Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """`bifrost ARGS` in a process of its own, to its end."""
    return subprocess.run(
        [BIFROST, *args],
        env=env,
        input=stdin,
        stdin=subprocess.DEVNULL if stdin is None else None,
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
    )
