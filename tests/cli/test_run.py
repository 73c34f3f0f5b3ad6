"""`bifrost run` against a running `bifrost serve`: exit codes, the log live, resuming a dropped stream, Ctrl-C."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
import time

import httpx
import pytest

from bifrost_devtools.services import free_port
from tests.api.conftest import eventually
from tests.cli.conftest import BIFROST, Server, bifrost
from tests.cli.proxy import proxy_to


@pytest.mark.parametrize(
    ("arguments", "status", "code"),
    [
        (["add", "-p", "a=2"], "Success", 0),
        (["ticks"], "Success", 0),
        (["explode"], "Failed", 1),
        (["soft_fail"], "CompletedWithErrors", 3),
        (["too_slow"], "Timeout", 4),
    ],
)
def test_the_exit_code_says_how_the_execution_ended(
    server: Server, arguments: list[str], status: str, code: int
) -> None:
    done = bifrost("run", *arguments, "--output", "json", env=server.environment())
    assert done.returncode == code, done.stdout + done.stderr  # the execution, with its error, is on stdout
    assert json.loads(done.stdout)["status"] == status


def test_a_finished_run_prints_its_result_and_how_it_ended(server: Server) -> None:
    done = bifrost("run", "add", "-p", "a=2", "-p", "b:=40", env=server.environment())
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"sum": 42}
    assert "add Success" in done.stderr

    failed = bifrost("run", "explode", env=server.environment())
    assert failed.returncode == 1
    assert "explode Failed" in failed.stderr
    assert "RuntimeError: disk on fire" in failed.stderr


def test_a_cancelled_execution_exits_5(server: Server) -> None:
    running = subprocess.Popen(
        [BIFROST, "run", "nap", "--output", "json"],
        env=server.environment(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    with server.api() as api:
        execution_id = eventually(lambda: _running(api, "nap"), within=60, what="the nap to run")
    cancelled = bifrost("executions", "cancel", execution_id, env=server.environment())
    assert cancelled.returncode == 0, cancelled.stderr
    stdout, stderr = running.communicate(timeout=60)
    assert running.returncode == 5, stderr
    assert json.loads(stdout)["status"] == "Cancelled"


def _running(api: httpx.Client, workflow: str) -> str | None:
    page = api.get("/api/executions", params={"workflow": workflow, "status": "Running"}).json()
    return page["executions"][0]["execution_id"] if page["executions"] else None


def test_follow_prints_every_line_in_order(server: Server) -> None:
    done = bifrost("run", "ticks", "-p", "count=12", "--follow", env=server.environment())
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if "tick" in line]
    assert [line.rsplit(" ", 1)[1] for line in lines] == [str(i) for i in range(12)]
    assert done.stdout.splitlines()[-1] == "12"  # the result, after the log


def test_follow_resumes_a_dropped_stream_without_losing_or_repeating_a_line(server: Server) -> None:
    with proxy_to(server.port) as proxy:
        proxy.cut_streams, proxy.cut_after_log_events = 2, 3
        done = bifrost(
            "run", "ticks", "-p", "count=15", "-p", "pause=0.1", "--follow", env=server.environment(url=proxy.url)
        )
    assert done.returncode == 0, done.stderr
    ticks = [line.rsplit(" ", 1)[1] for line in done.stdout.splitlines() if ": tick " in line]
    assert ticks == [str(i) for i in range(15)]
    # Cut twice, resumed twice, each time after the last line it had.
    assert len(proxy.stream_resumed_after) == 3
    first, *resumed = proxy.stream_resumed_after
    assert first is None and all(after is not None and after >= 3 for after in resumed)
    assert resumed[0] is not None and resumed[1] is not None and resumed[1] > resumed[0]


def test_no_wait_prints_the_execution_id_at_once(server: Server) -> None:
    done = bifrost("run", "nap", "-p", "seconds=0.1", "--no-wait", env=server.environment())
    assert done.returncode == 0, done.stderr
    execution_id = done.stdout.strip()
    shown = bifrost("executions", "show", execution_id, "-o", "json", env=server.environment())
    assert json.loads(shown.stdout)["workflow_name"] == "nap"


def test_timeout_stops_waiting_and_leaves_the_execution_running(server: Server) -> None:
    done = bifrost("run", "nap", "-p", "seconds=30", "--timeout", "1", env=server.environment())
    assert done.returncode == 8, done.stderr
    assert "had not finished after 1 s; it goes on running" in done.stderr
    execution_id = done.stderr.split("execution ")[-1].split(" ")[0]
    shown = json.loads(bifrost("executions", "show", execution_id, "-o", "json", env=server.environment()).stdout)
    assert shown["status"] in ("Pending", "Running")
    bifrost("executions", "cancel", execution_id, env=server.environment())


def test_timeout_ends_the_wait_while_the_server_sends_nothing(server: Server) -> None:
    """The stream's answer never comes (a stalled network): the wait ends when --timeout passes, not when a read
    of the connection gives up (a minute later)."""
    with proxy_to(server.port) as proxy:
        proxy.stall_streams = 10
        done = bifrost(
            "run", "nap", "-p", "seconds=30", "--timeout", "2", env=server.environment(url=proxy.url), timeout=20
        )
    assert proxy.stalled >= 1
    assert done.returncode == 8, done.stderr
    assert "had not finished after 2 s; it goes on running" in done.stderr
    execution_id = done.stderr.split("execution ")[-1].split(" ")[0]
    bifrost("executions", "cancel", execution_id, env=server.environment())


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["run", "add", "-p", "a"], "-p 'a': give a parameter as name=value, or name:=JSON"),
        (["run", "add", "-p", "a=x"], "parameters.a: Input should be a valid integer"),
        (["run", "add"], "parameters.a: Field required"),
        (["run", "no_such_workflow"], "no workflow named 'no_such_workflow' in the workspace"),
        (["run", "nap", "--no-wait", "--follow"], "--follow and --timeout wait for the execution"),
    ],
)
def test_a_wrong_command_line_exits_2_with_one_line(server: Server, arguments: list[str], message: str) -> None:
    done = bifrost(*arguments, env=server.environment())
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_a_wrong_key_exits_7_and_a_wrong_url_6_each_with_one_line(server: Server) -> None:
    wrong_key = bifrost("workflows", "list", env=server.environment(key="bfk_not-a-key-of-this-server-000"))
    assert wrong_key.returncode == 7
    assert wrong_key.stderr.startswith("bifrost: invalid API key")
    no_key = bifrost("run", "add", "-p", "a=1", env=server.environment(key=None))
    assert no_key.returncode == 7
    nobody = f"http://127.0.0.1:{free_port()}"
    unreachable = bifrost("run", "add", "-p", "a=1", env=server.environment(url=nobody), timeout=120)
    assert unreachable.returncode == 6
    assert unreachable.stderr.startswith(f"bifrost: cannot reach Bifrost at {nobody} (tried 5 times)")
    for done in (wrong_key, no_key, unreachable):
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_ctrl_c_asks_whether_to_cancel_and_cancels_when_told(server: Server) -> None:
    """On a terminal: the run's process gets SIGINT, asks, and on `y` cancels the execution and exits 5."""
    leader, follower = pty.openpty()
    running = subprocess.Popen(
        [BIFROST, "run", "nap"],
        env=server.environment(),
        stdin=follower,
        stdout=follower,
        stderr=follower,
        # As from a terminal's shell: a test run started in the background ignores SIGINT, and its children with it.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    os.close(follower)
    try:
        screen = _read_until(leader, b"Running")  # the progress display shows the stream's news
        running.send_signal(signal.SIGINT)
        screen += _read_until(leader, b"Cancel execution")
        assert b"[y/N]" in screen
        os.write(leader, b"y\n")
        assert running.wait(timeout=60) == 5
        screen += _read_until(leader, b"Cancelled")
    finally:
        if running.poll() is None:
            running.kill()
        os.close(leader)
    assert "nap Cancelled" in re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", screen.decode())  # without the colours


def _read_until(fd: int, wanted: bytes, within: float = 60) -> bytes:
    seen = b""
    deadline = time.monotonic() + within
    while wanted not in seen:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"{wanted!r} never came; the terminal shows {seen.decode(errors='replace')!r}"
        ready, _, _ = select.select([fd], [], [], remaining)
        if ready:
            try:
                seen += os.read(fd, 4096)
            except OSError:  # the process ended and closed the terminal
                break
    return seen
