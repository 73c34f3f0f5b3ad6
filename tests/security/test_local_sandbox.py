"""Local runners are sandboxed and limited, against `bifrost serve` in a subprocess as users run it (embedded NATS,
SQLite, the local backend with its defaults): a workflow cannot read the data folder, the control plane's
environment, nor another runner's environment or memory; it runs out of memory or processes with a reason that
names the limit; the data folder is private."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from bifrost._internal.protocol import ExecutionStatus
from bifrost_devtools.services import free_port
from tests.api.conftest import eventually

ADMIN_KEY = "bfk_local-sandbox-test-key-0123456789"
CANARY = "control-plane-canary-4b1d"
MAX_PROCESSES = 40

WORKFLOWS = """
import os
import subprocess
import time
from pathlib import Path

from bifrost import workflow


def _attempt(path, mode="r"):
    try:
        with open(path, mode + "b") as opened:
            return "read: " + opened.read(4096).decode(errors="replace")
    except OSError as exc:
        return type(exc).__name__


@workflow(execution_mode="sync")
def snoop(paths: list[str]):
    return {path: _attempt(path) for path in paths}


@workflow(execution_mode="sync")
def look_at(marker: str):
    pid = int(Path(marker).read_text())
    return {
        "visible": Path(f"/proc/{pid}").exists(),
        "cmdline": _attempt(f"/proc/{pid}/cmdline") != "PermissionError",
        "environ": _attempt(f"/proc/{pid}/environ"),
        "mem": _attempt(f"/proc/{pid}/mem"),
    }


@workflow
def hold(marker: str, release: str):
    Path(marker).write_text(str(os.getpid()))
    os.chmod(marker, 0o644)  # runners make their files private by default
    while not Path(release).exists():
        time.sleep(0.05)


@workflow(execution_mode="sync")
def hog(megabytes: int):
    block = bytearray(megabytes * 1024 * 1024)
    return len(block)


@workflow(execution_mode="sync", resources={"memory_limit_mb": 256})
def small_hog(megabytes: int):
    block = bytearray(megabytes * 1024 * 1024)
    return len(block)


@workflow(execution_mode="sync")
def spawn(count: int):
    children = [subprocess.Popen(["cat"], stdin=subprocess.PIPE) for _ in range(count)]
    return len(children)
"""


@dataclass
class Served:
    root: Path
    process: subprocess.Popen[bytes]
    url: str

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def shared(self) -> Path:
        return self.root / "shared"

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=120)

    def run(self, workflow: str, **parameters: Any) -> dict[str, Any]:
        with self.client() as client:
            response = client.post(f"/api/workflows/{workflow}/execute", json={"parameters": parameters})
        assert response.status_code == 200, response.text
        execution: dict[str, Any] = response.json()
        return execution

    def result(self, workflow: str, **parameters: Any) -> Any:
        execution = self.run(workflow, **parameters)
        assert execution["status"] == ExecutionStatus.SUCCESS, execution["error"]
        return execution["result"]


def _ready(served: Served) -> bool:
    if served.process.poll() is not None:
        raise AssertionError(f"bifrost serve exited: {(served.root / 'serve.log').read_text()[-3000:]}")
    try:
        with served.client() as client:
            return {"snoop", "look_at", "hold", "hog", "small_hog", "spawn"} <= {
                workflow["name"] for workflow in client.get("/api/workflows").json()
            }
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("sandbox")
    (root / "workspace").mkdir()
    (root / "workspace" / "flows.py").write_text(WORKFLOWS)
    shared = root / "shared"
    shared.mkdir()
    shared.chmod(0o1777)  # runners are users of their own under a root control plane
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("BIFROST_")}
    env |= {
        "BIFROST_DATA_DIR": str(root / "data"),
        "BIFROST_WORKSPACE_URL": str(root / "workspace"),
        "BIFROST_BOOTSTRAP_API_KEY": ADMIN_KEY,
        "BIFROST_LOCAL_SANDBOX_PATHS": json.dumps([str(shared)]),
        "BIFROST_LOCAL_MAX_PROCESSES": str(MAX_PROCESSES),
        "BIFROST_CANARY": CANARY,
    }
    with (root / "serve.log").open("wb") as log:
        process = subprocess.Popen(
            [str(Path(sys.executable).with_name("bifrost")), "serve", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    served = Served(root, process, f"http://127.0.0.1:{port}")
    try:
        eventually(lambda: _ready(served), within=90, what="bifrost serve to list the workflows")
        yield served
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_a_workflow_cannot_read_the_data_folder_nor_the_control_planes_environment(served: Served) -> None:
    data = served.data_dir
    targets = [
        data / "encryption.key",
        data / "secret.key",
        data / "bifrost.db",
        data / "nats",
        Path(f"/proc/{served.process.pid}/environ"),
    ]
    assert all(target.exists() for target in targets)

    seen = served.result("snoop", paths=[str(target) for target in targets])

    assert seen == {str(target): "FileNotFoundError" for target in targets}
    # The sandbox shows no process of the control plane's to pick instead.
    spots = served.result("snoop", paths=["/proc/1/environ", "/proc/2/environ", "/proc/3/environ"])
    assert not any(CANARY in outcome for outcome in spots.values())


def test_a_workflow_cannot_read_another_runners_environment_or_memory(served: Served) -> None:
    marker, release = served.shared / "holder.pid", served.shared / "release"
    with served.client() as client:
        started = client.post(
            "/api/workflows/hold/execute",
            params={"sync": "false"},
            json={"parameters": {"marker": str(marker), "release": str(release)}},
        )
    assert started.status_code == 202, started.text
    try:
        eventually(lambda: marker.exists() and marker.read_text(), within=90, what="the holding runner to start")
        seen = served.result("look_at", marker=str(marker))
    finally:
        release.touch()

    # The other runner is there to be seen, and what any process may read of another is readable ...
    assert seen["visible"] and seen["cmdline"]
    # ... but not its environment (its execution token) nor its memory.
    assert (seen["environ"], seen["mem"]) == ("PermissionError", "PermissionError")


def test_a_workflow_past_the_memory_limit_fails_naming_the_limit(served: Served) -> None:
    execution = served.run("hog", megabytes=2048)

    assert execution["status"] == ExecutionStatus.FAILED
    assert execution["error"]["message"] == "memory limit of 1024 MB reached"
    # Within the limit, memory is there to use.
    assert served.result("hog", megabytes=256) == 256 * 1024 * 1024


def test_a_workflows_own_memory_limit_applies(served: Served) -> None:
    execution = served.run("small_hog", megabytes=512)

    assert execution["status"] == ExecutionStatus.FAILED
    assert execution["error"]["message"] == "memory limit of 256 MB reached"


def test_too_many_processes_are_refused_naming_the_limit(served: Served) -> None:
    execution = served.run("spawn", count=MAX_PROCESSES * 2)

    assert execution["status"] == ExecutionStatus.FAILED
    assert execution["error"]["message"].startswith(
        f"process limit of {MAX_PROCESSES} processes and threads reached: could not start another"
    )
    assert served.result("spawn", count=3) == 3


def test_the_data_folder_is_private(served: Served) -> None:
    served.result("snoop", paths=[])  # a runner has run: its record and log are there too
    data = served.data_dir

    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    for name in ("encryption.key", "secret.key", "bifrost.db"):
        assert stat.S_IMODE((data / name).stat().st_mode) == 0o600, name
    runners = data / "runners"
    assert stat.S_IMODE(runners.stat().st_mode) == 0o700
    files = list(runners.iterdir())
    assert files
    assert {stat.S_IMODE(path.stat().st_mode) for path in files} == {0o600}
