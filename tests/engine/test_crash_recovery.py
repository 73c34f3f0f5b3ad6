"""Crashes, for real: `bifrost serve` in a subprocess with its embedded NATS, the local backend and real runner
processes. A runner killed with SIGKILL fails its execution with the reason; a control plane killed with SIGKILL
loses nothing its runners published and leaves nothing Running after it restarts."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from bifrost._internal.protocol import ExecutionStatus
from bifrost_devtools.services import free_port, wait_for_port
from control_plane.backends.local_records import RunnerRecords, is_same_process
from control_plane.db.models import Execution, ExecutionLog
from control_plane.db.session import make_engine

ADMIN_KEY = "bfk_engine-crash-test-key-0123456789"

WORKFLOWS = """
import asyncio
import logging
import os
import uuid
from pathlib import Path

from bifrost import workflow

logger = logging.getLogger(__name__)


@workflow
async def steady(lines: int, pause: float, marker_dir: str):
    # Named uniquely: runners of a restarted control plane are in a new PID namespace, where pids start again.
    Path(marker_dir, f"{uuid.uuid4().hex}.pid").write_text(str(os.getpid()))
    for index in range(lines):
        logger.info("line %d", index)
        await asyncio.sleep(pause)
    return {"lines": lines}
"""


class ControlPlane:
    """`bifrost serve` on a fixed port and data folder, startable again after a crash."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = {key: value for key, value in os.environ.items() if not key.startswith("BIFROST_")}
        env |= {
            "BIFROST_DATA_DIR": str(self.root / "data"),
            "BIFROST_WORKSPACE_URL": str(self.root / "workspace"),
            "BIFROST_BOOTSTRAP_API_KEY": ADMIN_KEY,
            "BIFROST_RUNNER_EXIT_GRACE_SECONDS": "1",
            "BIFROST_LOCAL_SANDBOX_PATHS": json.dumps([str(self.root / "markers")]),
        }
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [str(Path(sys.executable).parent / "bifrost"), "serve", "--port", str(self.port)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_for_port(self.port, timeout=60, process=self.process)
        wait_until(self._ready, "the control plane answers ready")

    @property
    def log(self) -> Path:
        """What every `bifrost serve` of this test printed, restarts included."""
        return self.root / "bifrost-serve.log"

    def _ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"bifrost serve exited with {self.process.returncode}: {self.log.read_text()[-3000:]}")
        try:
            return httpx.get(f"{self.url}/readyz", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=30)

    def start_steady(self, lines: int, pause: float, marker_dir: Path) -> str:
        try:
            with self.client() as client:
                response = client.post(
                    "/api/workflows/steady/execute",
                    params={"sync": "false"},
                    json={"parameters": {"lines": lines, "pause": pause, "marker_dir": str(marker_dir)}},
                )
        except httpx.HTTPError as exc:
            raise AssertionError(f"starting failed; bifrost serve printed: {self.log.read_text()[-3000:]}") from exc
        assert response.status_code in (200, 202), response.text
        execution_id: str = response.json()["execution_id"]
        return execution_id


def runner_pid(root: Path, execution_id: str) -> int:
    """The pid of the execution's runner, as the local backend recorded it (the workflow sees another one in its
    sandbox)."""
    record = RunnerRecords(root / "data" / "runners").read(execution_id)
    assert record is not None and record.pid is not None, f"no runner recorded for {execution_id}"
    return record.pid


def _kill_leftovers(root: Path) -> None:
    """A failed test must not leave the embedded nats-server or runners of a killed control plane behind."""
    state = root / "data" / "nats" / "server.json"
    with contextlib.suppress(OSError, ValueError, KeyError, ProcessLookupError):
        os.kill(int(json.loads(state.read_text())["pid"]), signal.SIGKILL)
    records = RunnerRecords(root / "data" / "runners")
    for path in records.folder.glob("*.json"):
        record = records.read(path.stem)
        if record is not None and record.pid is not None and is_same_process(record.pid, record.start_time):
            with contextlib.suppress(ProcessLookupError):
                os.kill(record.pid, signal.SIGKILL)


@pytest.fixture
def control_plane(tmp_path: Path) -> Iterator[ControlPlane]:
    (tmp_path / "workspace").mkdir()
    (tmp_path / "workspace" / "flows.py").write_text(WORKFLOWS)
    (tmp_path / "markers").mkdir()
    (tmp_path / "markers").chmod(0o1777)  # runners are users of their own under a root control plane
    plane = ControlPlane(tmp_path)
    plane.start()
    try:
        yield plane
    finally:
        plane.stop()
        _kill_leftovers(tmp_path)


@pytest.fixture
def database(control_plane: ControlPlane) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{control_plane.root / 'data' / 'bifrost.db'}")
    yield engine
    engine.dispose()


def executions(db: Engine, ids: list[str]) -> list[Execution]:
    with Session(db) as session:
        return list(session.exec(select(Execution).where(Execution.id.in_(ids))))  # type: ignore[attr-defined]


def log_messages(db: Engine, execution_id: str) -> list[tuple[int, str]]:
    with Session(db) as session:
        query = select(ExecutionLog).where(ExecutionLog.execution_id == execution_id)
        return sorted((log.line, log.message) for log in session.exec(query))


def wait_until(condition: Callable[[], Any], what: str, within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.05)


def test_a_runner_killed_with_sigkill_fails_its_execution_with_the_reason(
    control_plane: ControlPlane, database: Engine
) -> None:
    markers = control_plane.root / "markers"
    execution_id = control_plane.start_steady(lines=600, pause=0.05, marker_dir=markers)
    # The workflow creates its marker, then writes its pid into it: wait for the pid.
    wait_until(lambda: any(marker.read_text() for marker in markers.glob("*.pid")), "the runner starts the workflow")
    os.kill(runner_pid(control_plane.root, execution_id), signal.SIGKILL)

    wait_until(lambda: executions(database, [execution_id])[0].status.is_terminal, "the execution is closed")
    [execution] = executions(database, [execution_id])
    assert execution.status == ExecutionStatus.FAILED
    assert execution.error_type == "RunnerExited"
    assert "SIGKILL" in (execution.error_message or "")


def test_a_control_plane_killed_mid_run_loses_nothing(control_plane: ControlPlane, database: Engine) -> None:
    markers = control_plane.root / "markers"
    ids = [control_plane.start_steady(lines=40, pause=0.05, marker_dir=markers) for _ in range(3)]
    wait_until(lambda: len(list(markers.glob("*.pid"))) == 3, "all three runners start their workflow")

    control_plane.kill()
    # The runners keep running and publishing into the surviving NATS while no control plane ingests.
    control_plane.start()

    def all_finished() -> bool:
        return all(execution.status.is_terminal for execution in executions(database, ids))

    wait_until(all_finished, "every execution reaches a final status")
    for execution in executions(database, ids):
        assert execution.status == ExecutionStatus.SUCCESS, execution.error_message
        assert execution.result == {"lines": 40}
        assert log_messages(database, execution.id) == [(n + 1, f"line {n}") for n in range(40)]


def test_cancelling_a_running_workflow_stops_its_runner(control_plane: ControlPlane, database: Engine) -> None:
    markers = control_plane.root / "markers"
    execution_id = control_plane.start_steady(lines=600, pause=0.05, marker_dir=markers)
    wait_until(lambda: list(markers.glob("*.pid")), "the runner starts the workflow")
    with control_plane.client() as client:
        assert client.post(f"/api/executions/{execution_id}/cancel").status_code == 202

    wait_until(lambda: executions(database, [execution_id])[0].status.is_terminal, "the execution is closed")
    assert executions(database, [execution_id])[0].status == ExecutionStatus.CANCELLED
    pid = runner_pid(control_plane.root, execution_id)
    wait_until(lambda: not _process_exists(pid), "the runner process is gone")


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
