"""Faults under load, for real: `bifrost serve` with its embedded NATS, the local backend and twenty runners
logging over a few seconds. Whatever is killed with SIGKILL (the nats-server, or the control plane itself),
every execution ends with the status its workflow had and with every line it logged, and none runs twice."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import httpx
from sqlalchemy import Engine

from bifrost._internal.protocol import ExecutionStatus
from tests.engine import test_crash_recovery
from tests.engine.test_crash_recovery import ControlPlane, executions, log_messages, wait_until

# The crash-recovery tests' `bifrost serve` and its database, as fixtures of this module.
control_plane = test_crash_recovery.control_plane
database = test_crash_recovery.database

RUNS = 20
LINES = 30
PAUSE = 0.1
# The control plane's default per-workflow limit: half of the runs wait in the queue while the others run.
RUNNING_AT_ONCE = 10


def _nats_pid(plane: ControlPlane) -> int:
    return int(json.loads((plane.root / "data" / "nats" / "server.json").read_text())["pid"])


def _ready(plane: ControlPlane) -> bool:
    try:
        return httpx.get(f"{plane.url}/readyz", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def _markers(plane: ControlPlane) -> list[Path]:
    """One per workflow started: the runner writes its pid into it."""
    return [marker for marker in (plane.root / "markers").glob("*.pid") if marker.read_text()]


def _start_runs(plane: ControlPlane) -> list[str]:
    return [plane.start_steady(lines=LINES, pause=PAUSE, marker_dir=plane.root / "markers") for _ in range(RUNS)]


def _assert_every_run_succeeded_with_all_its_lines(db: Engine, ids: list[str]) -> None:
    wait_until(
        lambda: all(execution.status.is_terminal for execution in executions(db, ids)),
        "every execution reaches a final status",
        within=180,
    )
    for execution in executions(db, ids):
        assert execution.status == ExecutionStatus.SUCCESS, (execution.error_type, execution.error_message)
        assert execution.result == {"lines": LINES}
        assert log_messages(db, execution.id) == [(n + 1, f"line {n}") for n in range(LINES)]


def test_a_nats_server_killed_mid_run_is_restarted_and_no_run_loses_anything(
    control_plane: ControlPlane, database: Engine
) -> None:
    ids = _start_runs(control_plane)
    wait_until(lambda: len(_markers(control_plane)) >= RUNNING_AT_ONCE, "the first runners start their workflows")
    killed = _nats_pid(control_plane)

    os.kill(killed, signal.SIGKILL)

    wait_until(lambda: _nats_pid(control_plane) != killed, "the control plane starts the nats-server again")
    wait_until(lambda: _ready(control_plane), "the control plane is ready again")
    _assert_every_run_succeeded_with_all_its_lines(database, ids)
    assert len(_markers(control_plane)) == RUNS


def test_a_control_plane_killed_mid_run_launches_its_queued_work_soon_after_its_restart(
    control_plane: ControlPlane, database: Engine
) -> None:
    ids = _start_runs(control_plane)
    wait_until(lambda: len(_markers(control_plane)) >= RUNNING_AT_ONCE, "the first runners start their workflows")
    queued = [execution.id for execution in executions(database, ids) if execution.backend is None]
    assert queued, "some executions wait in the queue when the control plane dies"

    control_plane.kill()
    control_plane.start()

    # Far less than the minute an unacknowledged queue message used to wait before it came again.
    wait_until(
        lambda: all(execution.backend is not None for execution in executions(database, queued)),
        "the queued executions are launched after the restart",
        within=30,
    )
    _assert_every_run_succeeded_with_all_its_lines(database, ids)
    # One workflow start per execution: nothing was launched twice.
    assert len(_markers(control_plane)) == RUNS
