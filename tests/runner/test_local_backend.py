"""The `local` backend with its runner template, launching real runners against a real nats-server."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import resource
import secrets
import signal
import sys
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bifrost._internal.prepared_files import PreparedFile
from bifrost._internal.protocol import ExecutionStatus, RunnerClaim, RunnerEnded, RunPayload
from bifrost_devtools.services import NatsServer
from bifrost_runner.run import REHEARSAL_MODULE, preconnect, rehearse
from bifrost_runner.zygote import LOWEST_PRIORITY, priority_is_restorable
from control_plane.backends import local as local_backend
from control_plane.backends import local_template
from control_plane.backends.base import LaunchSpec, RunnerExit, RunnerWorkspace
from control_plane.backends.local import LOST_REASON, LocalBackend, basic_environment
from control_plane.backends.local_records import RunnerRecord, RunnerRecords
from control_plane.backends.local_sandbox import (
    RUNNER_UID_BASE,
    SandboxError,
    process_limit_problem,
    runner_cache_dir,
)
from control_plane.backends.local_template import RunnerTemplate
from control_plane.security.nats_identities import AccountSigner
from control_plane.settings import Settings
from tests.runner.conftest import Harness, logged

WAIT_FOR_MARKER = """
    import asyncio
    import os
    from pathlib import Path
    from bifrost import workflow

    @workflow
    async def wait_for(marker: str):
        print("waiting")
        while not Path(marker).exists():
            await asyncio.sleep(0.02)
        return os.getpid()
"""


def launch_spec(harness: Harness, payload: RunPayload, token: str) -> LaunchSpec:
    return LaunchSpec(
        execution_id=payload.execution_id,
        workflow_name=payload.workflow_name,
        org_id="org-1",
        token=token,
        timeout_seconds=payload.timeout_seconds,
        api_url=harness.api_url,
        nats_url=harness.nats.url,
        nats_credentials=harness.nats_identity(payload.execution_id),
        workspace_dir=str(harness.workspace),
    )


@dataclass
class LocalRun:
    harness: Harness
    settings: Settings
    backend: LocalBackend
    exits: asyncio.Queue[RunnerExit]

    def spec(self, payload: RunPayload, token: str) -> LaunchSpec:
        return launch_spec(self.harness, payload, token)

    async def launch(self, function_name: str, **fields: Any) -> RunPayload:
        payload, token = self.harness.payload(function_name, **fields)
        await self.backend.launch(self.spec(payload, token))
        return payload

    async def launch_as(self, execution_id: str, function_name: str, **fields: Any) -> RunPayload:
        """Launch an execution with the id `execution_id` (one the backend gave out)."""
        payload, _ = self.harness.payload(function_name, **fields)
        payload = payload.model_copy(update={"execution_id": execution_id})
        await self.backend.launch(self.spec(payload, self.harness.api.register(payload)))
        return payload

    async def next_exit(self) -> RunnerExit:
        return await asyncio.wait_for(self.exits.get(), timeout=60)


async def _started_backend(
    settings: Settings, ready_on: NatsServer | None = None
) -> tuple[LocalBackend, asyncio.Queue[RunnerExit]]:
    """With `ready_on`, spares wait connected to that NATS, as the engine has them."""
    exits: asyncio.Queue[RunnerExit] = asyncio.Queue()

    async def on_exit(runner_exit: RunnerExit) -> None:
        await exits.put(runner_exit)

    backend = LocalBackend(settings)
    if ready_on is not None:
        backend.connect_runners_to(ready_on.url, AccountSigner(ready_on.account_seed))
    await backend.start(on_exit)
    return backend, exits


def local_settings(harness: Harness, tmp_path: Path, **fields: Any) -> Settings:
    """The local backend's settings for runners of `harness`: they see its workspace, and may write in
    `shared_folder`."""
    fields.setdefault("local_sandbox_paths", [shared_folder(tmp_path)])
    return Settings(data_dir=tmp_path / "data", workspace_url=str(harness.workspace), local_pool_size=1, **fields)


def shared_folder(tmp_path: Path) -> Path:
    """A folder that the test and its runners (each a user of its own under a root control plane) may write."""
    folder = tmp_path / "shared"
    folder.mkdir(exist_ok=True)
    folder.chmod(0o1777)
    return folder


@pytest.fixture
async def local(harness: Harness, tmp_path: Path) -> AsyncIterator[LocalRun]:
    settings = local_settings(harness, tmp_path, cancel_grace_seconds=1.0)
    backend, exits = await _started_backend(settings)
    yield LocalRun(harness, settings, backend, exits)
    await backend.stop()


@pytest.fixture
async def ready_local(harness: Harness, tmp_path: Path) -> AsyncIterator[LocalRun]:
    """The local backend with spares waiting connected to NATS."""
    settings = local_settings(harness, tmp_path)
    backend, exits = await _started_backend(settings, ready_on=harness.nats)
    yield LocalRun(harness, settings, backend, exits)
    await backend.stop()


async def _result(harness: Harness, execution_id: str) -> object:
    events = await harness.events(execution_id)
    finished = events[-1].event
    assert finished.type == "finished" and finished.status is ExecutionStatus.SUCCESS, finished
    (result,) = [stored.event for stored in events if stored.event.type == "result"]
    return result.result


async def test_each_launch_runs_in_a_fresh_process_and_its_exit_is_reported(local: LocalRun) -> None:
    local.harness.write("""
        import os
        from bifrost import workflow

        @workflow
        def pid_namespace():
            return os.readlink("/proc/self/ns/pid")
    """)
    first = await local.launch("pid_namespace")
    second = await local.launch("pid_namespace")
    exits = {runner_exit.execution_id: runner_exit for runner_exit in [await local.next_exit() for _ in range(2)]}

    assert exits[first.execution_id] == RunnerExit(
        execution_id=first.execution_id, exit_code=0, reason="runner exited with code 0"
    )
    assert exits[second.execution_id].exit_code == 0
    # Each in a PID namespace of its own, not the template's.
    namespaces = {await _result(local.harness, payload.execution_id) for payload in (first, second)}
    assert len(namespaces) == 2
    assert os.readlink(f"/proc/{local.backend.template_pid}/ns/pid") not in namespaces


def _children(pid: int) -> set[int]:
    return {int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}


async def test_spares_wait_at_low_priority_and_runs_get_the_template_priority_back(local: LocalRun) -> None:
    local.harness.write("""
        import os
        from bifrost import workflow

        @workflow
        def priority():
            return os.getpriority(os.PRIO_PROCESS, 0)
    """)
    template_pid = local.backend.template_pid
    assert template_pid is not None
    template_priority = os.getpriority(os.PRIO_PROCESS, template_pid)

    # The first runner was forked before any claim; the later ones got ready (and rehearsed) while waiting.
    for _ in range(3):
        payload = await local.launch("priority")
        assert (await local.next_exit()).exit_code == 0
        assert await _result(local.harness, payload.execution_id) == template_priority

    if not priority_is_restorable():
        print("this process may not raise its priority again: spares wait at the template's priority")
        return
    # The template's child is the spare's keeper, whose child waits for the claim.
    (keeper,) = await asyncio.to_thread(_eventually_one_child, template_pid)
    (spare,) = await asyncio.to_thread(_eventually_one_child, keeper)
    assert os.getpriority(os.PRIO_PROCESS, spare) == LOWEST_PRIORITY


def _eventually_one_child(pid: int) -> set[int]:
    for _ in range(100):
        children = _children(pid)
        if len(children) == 1:
            return children
        time.sleep(0.05)
    raise AssertionError(f"process {pid} has children {_children(pid)}, not one")


async def test_launch_is_idempotent_by_execution_id(local: LocalRun, tmp_path: Path) -> None:
    local.harness.write("""
        import os
        from pathlib import Path
        from bifrost import workflow

        @workflow
        def count(log: str):
            with open(log, "a") as file:
                file.write(f"{os.getpid()}\\n")
    """)
    runs_log = shared_folder(tmp_path) / "runs.log"
    payload, token = local.harness.payload("count", parameters={"log": str(runs_log)})
    spec = local.spec(payload, token)

    await asyncio.gather(local.backend.launch(spec), local.backend.launch(spec))
    ended = await local.next_exit()
    assert ended.execution_id == payload.execution_id
    # Launched again, the ended runner's exit is reported again (whoever launched it may have died before it
    # could), and nothing runs.
    await local.backend.launch(spec)
    assert await local.next_exit() == ended.model_copy(update={"log_tail": None})
    # A control plane restarted on the same data folder does not run it again either.
    await local.backend.stop()
    local.backend, local.exits = await _started_backend(local.settings)
    await local.backend.launch(spec)
    assert (await local.next_exit()).execution_id == payload.execution_id
    # Another execution through the same template: once it is done, a duplicate would have run before it.
    other = await local.launch("count", parameters={"log": str(shared_folder(tmp_path) / "other.log")})
    assert (await local.next_exit()).execution_id == other.execution_id

    assert len(runs_log.read_text().splitlines()) == 1
    assert local.exits.empty()


async def test_kill_terminates_the_runner(local: LocalRun, tmp_path: Path) -> None:
    local.harness.write(WAIT_FOR_MARKER)
    payload = await local.launch("wait_for", parameters={"marker": str(tmp_path / "never")})
    await local.harness.events(payload.execution_id, until=logged("waiting"))

    await local.backend.kill(payload.execution_id)

    runner_exit = await local.next_exit()
    assert (runner_exit.execution_id, runner_exit.exit_code, runner_exit.reason) == (
        payload.execution_id, None, "runner killed by signal 15 (SIGTERM) at the control plane's request"
    )


async def test_kill_escalates_to_sigkill_when_sigterm_is_ignored(local: LocalRun) -> None:
    local.harness.write("""
        import asyncio
        import signal
        from bifrost import workflow

        @workflow
        async def stubborn():
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            print("ignoring SIGTERM")
            await asyncio.sleep(3600)
    """)
    payload = await local.launch("stubborn")
    await local.harness.events(payload.execution_id, until=logged("ignoring SIGTERM"))

    await local.backend.kill(payload.execution_id)

    runner_exit = await local.next_exit()
    assert runner_exit.reason == "runner killed by signal 9 (SIGKILL) at the control plane's request"


async def test_a_runner_killed_from_outside_is_reported(local: LocalRun, tmp_path: Path) -> None:
    local.harness.write(WAIT_FOR_MARKER)
    payload = await local.launch("wait_for", parameters={"marker": str(tmp_path / "never")})
    await local.harness.events(payload.execution_id, until=logged("waiting"))
    pid = local.backend.runner_ref(payload.execution_id)
    assert pid is not None

    os.kill(int(pid), signal.SIGKILL)

    runner_exit = await local.next_exit()
    assert (runner_exit.execution_id, runner_exit.exit_code, runner_exit.reason, runner_exit.status) == (
        payload.execution_id, None, "runner killed by signal 9 (SIGKILL)", None
    )
    # What the runner printed comes along, for the execution's error details.
    assert runner_exit.log_tail is not None
    assert runner_exit.log_tail.endswith("INFO stdout: waiting")


async def test_each_runner_logs_to_the_file_of_its_execution(local: LocalRun) -> None:
    local.harness.write("""
        from bifrost import workflow

        @workflow
        def say(word: str):
            print(word)
    """)
    # The first claim tells the template where runners log; later runners make their file there ahead.
    payloads = []
    for word in ("one", "two", "three"):
        payloads.append(await local.launch("say", parameters={"word": word}))
        assert (await local.next_exit()).exit_code == 0

    runners = local.settings.data_dir.resolve() / "runners"
    for payload, word in zip(payloads, ("one", "two", "three"), strict=True):
        *_, printed, ended = (runners / f"{payload.execution_id}.log").read_text().splitlines()
        assert printed.endswith(f"INFO stdout: {word}")
        assert ended.endswith("bifrost-runner: the workflow ended Success")
    assert sorted(path.name for path in runners.iterdir()) == sorted(
        f"{payload.execution_id}{suffix}" for payload in payloads for suffix in (".json", ".log")
    )


async def test_a_hung_runner_is_killed_after_its_timeout_and_grace(local: LocalRun) -> None:
    # Stuck while importing, before the runner's own timeout applies: only the backend can end it.
    local.harness.write("""
        import time
        time.sleep(3600)
    """)
    payload = await local.launch("anything", timeout_seconds=1)

    runner_exit = await local.next_exit()
    assert (runner_exit.execution_id, runner_exit.reason, runner_exit.status) == (
        payload.execution_id,
        "runner killed by signal 9 (SIGKILL) after exceeding its timeout of 1 s",
        ExecutionStatus.TIMEOUT,
    )


async def test_runner_environment_has_no_control_plane_configuration(
    harness: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BIFROST_DATABASE_URL", "postgresql://admin:hunter2@db/bifrost")
    monkeypatch.setenv("BIFROST_SECRET_KEY", "signing-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret")
    settings = local_settings(harness, tmp_path, local_memory_limit_mb=3072)
    backend, exits = await _started_backend(settings)
    local = LocalRun(harness, settings, backend, exits)
    harness.write("""
        import os
        import resource
        from bifrost import workflow

        @workflow
        def environment():
            return {
                "env": dict(os.environ),
                "memory": resource.getrlimit(resource.RLIMIT_AS)[0],
                "cpu": resource.getrlimit(resource.RLIMIT_CPU)[0],
                "processes": resource.getrlimit(resource.RLIMIT_NPROC)[0],
            }
    """)
    try:
        payload = await local.launch("environment", timeout_seconds=30)
        await local.next_exit()
        seen = await _result(harness, payload.execution_id)
    finally:
        await backend.stop()

    assert isinstance(seen, dict)
    env = seen["env"]
    assert env["BIFROST_EXECUTION_ID"] == payload.execution_id
    assert env["BIFROST_NATS_URL"] == harness.nats.url
    assert "BIFROST_DATABASE_URL" not in env
    assert "BIFROST_SECRET_KEY" not in env
    assert "AWS_SECRET_ACCESS_KEY" not in env
    runner_keys = set(local.spec(payload, "token").runner_env())
    basics = {"PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR"}
    assert set(env) <= runner_keys | basics | {"BIFROST_WORKSPACE_CACHE_DIR"}
    assert env["BIFROST_WORKSPACE_CACHE_DIR"] == str(runner_cache_dir(settings))  # the sandbox's own
    if backend.cgroups is None:
        assert seen["memory"] == 3072 * 1024 * 1024
    else:  # the runner's cgroup holds its memory limit (see test_local_cgroups), not its address space
        assert seen["memory"] == resource.RLIM_INFINITY
    assert seen["cpu"] == 30 + 5
    assert seen["processes"] == settings.local_max_processes == 256


async def test_the_backend_does_not_start_without_its_sandbox(
    harness: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "bin").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))  # no bwrap on it

    with pytest.raises(SandboxError, match=r"`bwrap` is not installed.*BIFROST_LOCAL_SANDBOX=none"):
        await _started_backend(local_settings(harness, tmp_path))

    missing = tmp_path / "missing"
    monkeypatch.undo()
    with pytest.raises(SandboxError, match=re.escape(f"BIFROST_LOCAL_SANDBOX_PATHS names {missing}, which is not")):
        await _started_backend(local_settings(harness, tmp_path, local_sandbox_paths=[missing]))


async def test_unsandboxed_runners_run_with_a_warning(
    harness: Harness, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    harness.write("""
        import os
        from bifrost import workflow

        @workflow
        def where(path: str):
            return os.path.exists(path)
    """)
    settings = local_settings(harness, tmp_path, local_sandbox="none")
    backend, exits = await _started_backend(settings)
    local = LocalRun(harness, settings, backend, exits)
    try:
        # The data folder, invisible to sandboxed runners, is there to be read.
        payload = await local.launch("where", parameters={"path": str(settings.data_dir.resolve() / "runners")})
        assert (await local.next_exit()).exit_code == 0
    finally:
        await backend.stop()

    assert await _result(harness, payload.execution_id) is True
    assert any("local runners are NOT sandboxed" in record.getMessage() for record in caplog.records)


async def test_sandboxed_runners_share_one_workspace_cache_their_workflows_cannot_write(
    harness: Harness, tmp_path: Path
) -> None:
    harness.write("""
        import os
        from pathlib import Path
        from bifrost import workflow

        @workflow
        def cache():
            folder = Path(os.environ["BIFROST_WORKSPACE_CACHE_DIR"])
            try:
                (folder / "probe").write_text("cached")
                written = "written"
            except OSError as exc:
                written = type(exc).__name__
            return {"dir": str(folder), "uid": os.getuid(), "written": written}
    """)
    cache_dir = tmp_path / "cache"
    settings = local_settings(harness, tmp_path, runner_workspace_cache_dir=str(cache_dir))
    backend, exits = await _started_backend(settings)
    local = LocalRun(harness, settings, backend, exits)
    workspace = RunnerWorkspace(url=str(harness.workspace), cache_dir=str(cache_dir))
    try:
        payloads = []
        for _ in range(2):
            payload, token = harness.payload("cache")
            await backend.launch(local.spec(payload, token).model_copy(update={"workspace": workspace}))
            assert (await local.next_exit()).exit_code == 0
            payloads.append(payload)
    finally:
        await backend.stop()

    for payload in payloads:
        seen = await _result(harness, payload.execution_id)
        assert isinstance(seen, dict)
        assert seen["dir"] == str(cache_dir)
        assert seen["written"] == "OSError"  # a read-only file system
        if os.geteuid() == 0:
            assert seen["uid"] >= RUNNER_UID_BASE
    assert not (cache_dir / "probe").exists()


async def test_a_finished_runner_waits_for_nats_as_long_as_its_launch_says(local: LocalRun, tmp_path: Path) -> None:
    local.harness.write(WAIT_FOR_MARKER)
    marker = shared_folder(tmp_path) / "go"
    payload, token = local.harness.payload("wait_for", parameters={"marker": str(marker)})
    await local.backend.launch(local.spec(payload, token).model_copy(update={"report_seconds": 1}))
    await local.harness.events(payload.execution_id, until=logged("waiting"))
    await asyncio.to_thread(local.harness.nats.stop)
    try:
        marker.touch()
        # Within `next_exit`'s minute: the runner's own default wait is a quarter of an hour.
        runner_exit = await local.next_exit()
    finally:
        await asyncio.to_thread(local.harness.nats.start)
    assert (runner_exit.execution_id, runner_exit.exit_code) == (payload.execution_id, 1)


async def test_the_template_is_restarted_after_it_dies(local: LocalRun, tmp_path: Path) -> None:
    local.harness.write(WAIT_FOR_MARKER)
    marker = shared_folder(tmp_path) / "go"
    running = await local.launch("wait_for", parameters={"marker": str(marker)})
    await local.harness.events(running.execution_id, until=logged("waiting"))
    template_pid = local.backend.template_pid
    assert template_pid is not None

    os.kill(template_pid, signal.SIGKILL)
    marker.touch()
    after = await local.launch("wait_for", parameters={"marker": str(marker)})
    exits = {runner_exit.execution_id: runner_exit for runner_exit in [await local.next_exit() for _ in range(2)]}

    assert exits[after.execution_id].reason == "runner exited with code 0"
    assert local.backend.template_pid not in (None, template_pid)
    # The runner that outlived its template is still reported, by pid, without its exit status.
    assert exits[running.execution_id].reason == (
        "runner ended; its exit status is unknown (the runner template that started it had died)"
    )
    await _result(local.harness, running.execution_id)


async def test_reconcile_watches_live_runners_and_reports_lost_ones(local: LocalRun, tmp_path: Path) -> None:
    local.harness.write(WAIT_FOR_MARKER)
    marker = shared_folder(tmp_path) / "go"
    alive = await local.launch("wait_for", parameters={"marker": str(marker)})
    await local.harness.events(alive.execution_id, until=logged("waiting"))
    await local.backend.stop()  # the control plane goes away; its runner keeps running
    finished_process = await asyncio.create_subprocess_exec("true")
    await finished_process.wait()
    records = RunnerRecords(local.settings.data_dir.resolve() / "runners")
    records.write(RunnerRecord(execution_id="dead-run", pid=finished_process.pid, start_time=1))
    # Cut short by a crash while it was being written.
    records.write(RunnerRecord(execution_id="torn-record", pid=os.getpid()))
    torn = records.folder / "torn-record.json"
    torn.write_bytes(torn.read_bytes()[:20])

    local.backend, local.exits = await _started_backend(local.settings)
    await local.backend.reconcile([alive.execution_id, "dead-run", "never-launched", "torn-record"])
    lost = {runner_exit.execution_id: runner_exit for runner_exit in [await local.next_exit() for _ in range(3)]}
    marker.touch()
    reattached = await local.next_exit()

    assert lost == {
        execution_id: RunnerExit(execution_id=execution_id, exit_code=None, reason=LOST_REASON)
        for execution_id in ("dead-run", "never-launched", "torn-record")
    }
    assert reattached == RunnerExit(
        execution_id=alive.execution_id,
        exit_code=None,
        reason="runner ended; its exit status is unknown (it outlived a control-plane restart)",
    )
    await _result(local.harness, alive.execution_id)


async def test_a_launch_an_earlier_process_made_is_watched_not_repeated(local: LocalRun, tmp_path: Path) -> None:
    local.harness.write(WAIT_FOR_MARKER)
    marker = shared_folder(tmp_path) / "go"
    payload, token = local.harness.payload("wait_for", parameters={"marker": str(marker)})
    spec = local.spec(payload, token)
    await local.backend.launch(spec)
    await local.harness.events(payload.execution_id, until=logged("waiting"))
    runner_ref = local.backend.runner_ref(payload.execution_id)
    await local.backend.stop()  # the control plane dies before it recorded the launch; its runner keeps running

    local.backend, local.exits = await _started_backend(local.settings)
    await local.backend.launch(spec)  # the launch comes again, from the queue
    marker.touch()
    reattached = await local.next_exit()

    assert local.backend.runner_ref(payload.execution_id) == runner_ref
    assert reattached == RunnerExit(
        execution_id=payload.execution_id,
        exit_code=None,
        reason="runner ended; its exit status is unknown (it outlived a control-plane restart)",
    )
    await _result(local.harness, payload.execution_id)
    events = [stored.event for stored in await local.harness.events(payload.execution_id)]
    assert [event.type for event in events].count("started") == 1


def test_a_rewritten_record_is_exactly_the_new_one(tmp_path: Path) -> None:
    records = RunnerRecords(tmp_path)
    assert records.create("run-1")
    long = RunnerRecord(execution_id="run-1", pid=4242, start_time=99, kill_at=1e9, reason="x" * 200)
    records.write(long)
    short = RunnerRecord(execution_id="run-1", pid=7)
    records.write(short)

    assert records.read("run-1") == short
    assert not records.create("run-1")


def test_a_record_whose_prepared_file_cannot_be_named_is_created_anyway(tmp_path: Path) -> None:
    elsewhere = Path("/dev/shm")
    if not elsewhere.is_dir() or elsewhere.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("needs /dev/shm on another filesystem than the test's folder, to make a file unnameable there")
    records = RunnerRecords(tmp_path)
    # Made on another filesystem, it cannot be linked into the records folder.
    records._prepared = PreparedFile.make(elsewhere)

    assert records.create("run-1")
    assert records.read("run-1") == RunnerRecord(execution_id="run-1")
    assert not records.create("run-1")


async def test_runs_succeed_when_their_urls_differ_from_those_the_ready_runner_expected(local: LocalRun) -> None:
    """A ready runner makes its API client in advance for the URL of the previous run; a run sent elsewhere makes
    one anew."""
    local.harness.write("""
        from bifrost import workflow

        @workflow
        def hello():
            return "hello"
    """)
    nats_port = local.harness.nats.url.rsplit(":", 1)[1]
    elsewhere = {"api_url": local.harness.api_url + "/", "nats_url": f"nats://localhost:{nats_port}"}
    launched = []
    for urls in ({}, {}, elsewhere, elsewhere, {}):
        payload, token = local.harness.payload("hello")
        await local.backend.launch(local.spec(payload, token).model_copy(update=urls))
        assert (await local.next_exit()).exit_code == 0
        launched.append(payload)

    assert [await _result(local.harness, payload.execution_id) for payload in launched] == ["hello"] * 5


async def test_a_handed_payload_runs_without_asking_the_control_plane(local: LocalRun) -> None:
    local.harness.write("""
        from bifrost import workflow

        @workflow
        def double(n: int):
            return n * 2
    """)
    payload, _ = local.harness.payload("double", parameters={"n": 21})
    # The API refuses this token: the run can only succeed on the payload handed over with the claim.
    spec = local.spec(payload, "refused-token").model_copy(update={"payload": payload})

    await local.backend.launch(spec)

    assert await _result(local.harness, payload.execution_id) == 42
    assert (await local.next_exit()).exit_code == 0


async def test_a_rehearsal_leaves_the_process_as_it_was(harness: Harness, caplog: pytest.LogCaptureFixture) -> None:
    root = logging.getLogger()
    before = (sys.stdout, sys.stderr, list(root.handlers), root.level, list(sys.path))
    preconnected = preconnect(harness.api_url)
    try:
        await rehearse(preconnected)
    finally:
        await preconnected.close()

    # The stand-in workflow ran, imported from its folder.
    assert [record.getMessage() for record in caplog.records if record.name == "bifrost.rehearsal"] == [
        "rehearsing 1"
    ]
    assert (sys.stdout, sys.stderr, list(root.handlers), root.level, list(sys.path)) == before
    assert REHEARSAL_MODULE not in sys.modules


async def test_runners_may_each_have_a_user_namespace_of_their_own(harness: Harness, tmp_path: Path) -> None:
    """How the sandbox of a non-root control plane, whose runners share its user, gives each runner a process
    limit of its own: the kernel counts a user's processes per user namespace."""
    harness.write("""
        import os
        from bifrost import workflow

        @workflow
        def namespace():
            return os.readlink("/proc/self/ns/user")
    """)
    ended: asyncio.Queue[RunnerEnded] = asyncio.Queue()
    template = RunnerTemplate(
        1, basic_environment(), ended.put_nowait, lambda: None, options=["--runner-user-namespaces"]
    )
    await template.start()
    payload, token = harness.payload("namespace")
    claim = RunnerClaim(
        execution_id=payload.execution_id,
        env=basic_environment() | launch_spec(harness, payload, token).runner_env(),
        log_path=str(tmp_path / "runner.log"),
        payload=payload,
    )
    try:
        await template.fork(claim)
        assert (await asyncio.wait_for(ended.get(), timeout=60)).exit_code == 0
    finally:
        await template.close()

    assert await _result(harness, payload.execution_id) != os.readlink("/proc/self/ns/user")



def _stalled_until_exists(path: Path, within: float) -> bool:
    """Whether `path` exists within `within` seconds, holding up the calling event loop meanwhile."""
    deadline = time.monotonic() + within
    while not path.exists():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


TOUCH_MARKER = """
    from pathlib import Path
    from bifrost import workflow

    @workflow
    def touch(marker: str):
        Path(marker).touch()
"""


async def _runs_to_its_end_before_the_backend_reads_of_it(local: LocalRun, tmp_path: Path) -> None:
    """Launch a run, then hold up this event loop from the moment its claim is out: the runner runs, ends and is
    reaped before the template's word of its fork is read. It is launched and its end reported all the same."""
    local.harness.write(TOUCH_MARKER)
    marker = shared_folder(tmp_path) / "touched"
    payload, token = local.harness.payload("touch", parameters={"marker": str(marker)})
    launching = asyncio.create_task(local.backend.launch(local.spec(payload, token)))
    # One step of the event loop at a time, until the claim is out.
    for _step in range(10_000):
        await asyncio.sleep(0)
        if _stalled_until_exists(marker, within=0.05):
            break
    _stalled_until_exists(marker, within=60)
    _stalled_until_exists(marker.with_name("never"), within=1.0)  # its exit and reaping
    await launching

    runner_exit = await local.next_exit()
    assert (runner_exit.execution_id, runner_exit.exit_code) == (payload.execution_id, 0)
    await _result(local.harness, payload.execution_id)


async def test_a_runner_gone_before_its_fork_is_heard_of_is_launched_and_reported(
    local: LocalRun, tmp_path: Path
) -> None:
    await asyncio.sleep(0.5)  # the template's news of its spare is read
    await _runs_to_its_end_before_the_backend_reads_of_it(local, tmp_path)


async def test_a_runner_forked_for_its_claim_and_gone_before_it_is_found_is_launched_and_reported(
    harness: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No spare waits: the runner is forked with its claim, and ends before the backend looks for it. That happens
    only where runners get no cgroups, as here: a runner that gets one runs its claim only once the backend found it
    and moved it there (see test_local_cgroups)."""
    monkeypatch.setattr(LocalBackend, "_find_cgroups", lambda _: None)
    settings = local_settings(harness, tmp_path).model_copy(update={"local_pool_size": 0})
    backend, exits = await _started_backend(settings)
    try:
        await _runs_to_its_end_before_the_backend_reads_of_it(LocalRun(harness, settings, backend, exits), tmp_path)
    finally:
        await backend.stop()


def test_links_a_runner_puts_in_place_of_its_log_or_record_are_never_followed(tmp_path: Path) -> None:
    key = tmp_path / "encryption.key"
    key.write_text("the control plane's key")
    records = RunnerRecords(tmp_path / "runners")
    records.prepare()
    records.log_path("run-1").symlink_to(key)
    (tmp_path / "runners" / "run-1.json").symlink_to(key)

    assert records.log_tail("run-1", 50) is None
    assert records.read("run-1") is None
    records.write(RunnerRecord(execution_id="run-1", pid=4242, start_time=1, kill_at=1e9))
    assert key.read_text() == "the control plane's key"
    assert not (tmp_path / "runners" / "run-1.json").is_symlink()
    assert records.read("run-1") == RunnerRecord(execution_id="run-1", pid=4242, start_time=1, kill_at=1e9)


def test_a_runner_log_tail_holds_whole_lines_only(tmp_path: Path) -> None:
    """A line cut by the tail's window could end with part of a secret, which masking would not recognize."""
    records = RunnerRecords(tmp_path)
    records.prepare()
    records.log_path("run-1").write_bytes(b"token=" + b"hunter2-" * 2000 + b"\nwhole line\nlast line\n")
    # The last 512 bytes (two lines' worth) begin just after a line's end.
    records.log_path("run-2").write_bytes(b"x" * 100 + b"\n" + b"a" * 501 + b"\nlast line\n")

    assert records.log_tail("run-1", 50) == "whole line\nlast line"
    assert records.log_tail("run-2", 2) == "a" * 501 + "\nlast line"


async def test_runners_are_found_in_proc_off_the_event_loop(
    harness: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Finding a sandboxed runner's pid reads /proc: in a thread, not on the event loop every request waits for."""
    readers: list[threading.Thread] = []
    find = local_template.host_pid

    def finding(parent: int, pid_inside: int) -> int | None:
        readers.append(threading.current_thread())
        return find(parent, pid_inside)

    monkeypatch.setattr(local_template, "host_pid", finding)
    settings = local_settings(harness, tmp_path)
    backend, exits = await _started_backend(settings)
    local = LocalRun(harness, settings, backend, exits)
    harness.write(TOUCH_MARKER)
    try:
        payload = await local.launch("touch", parameters={"marker": str(shared_folder(tmp_path) / "touched")})
        assert (await local.next_exit()).exit_code == 0
    finally:
        await backend.stop()

    await _result(harness, payload.execution_id)
    assert readers  # the template's, and its forks'
    assert threading.current_thread() not in readers


def test_a_non_root_control_plane_says_when_runners_cannot_have_a_process_limit() -> None:
    assert process_limit_problem("6.1.0-18-amd64") is None
    assert process_limit_problem("5.14.0-362.el9.x86_64") is None
    problem = process_limit_problem("5.10.0-28-amd64")
    assert problem is not None
    assert "5.10.0-28-amd64" in problem and "BIFROST_LOCAL_MAX_PROCESSES" in problem
    assert "no process limit" in problem


FIND_IN_MEMORY = """
    import ctypes
    from bifrost import workflow

    @workflow
    def find_in_memory(head: str, tail: str, password: str = ""):
        \"\"\"How often `head` followed by `tail` is in this process's writable memory (never joined here).\"\"\"
        head_bytes, tail_bytes = head.encode(), tail.encode()
        found = 0
        with open("/proc/self/maps") as maps:
            regions = [line.split()[:2] for line in maps]
        for addresses, permissions in regions:
            if not permissions.startswith("rw"):
                continue
            start, end = (int(address, 16) for address in addresses.split("-"))
            chunk = ctypes.string_at(start, end - start)
            at = chunk.find(head_bytes)
            while at != -1:
                found += chunk[at + len(head_bytes) : at + len(head_bytes) + len(tail_bytes)] == tail_bytes
                at = chunk.find(head_bytes, at + 1)
        return found
"""


async def test_no_runner_finds_another_execution_secrets_in_the_memory_it_inherits(ready_local: LocalRun) -> None:
    """Every claim, and every slot, passes through the template, which later forks the runners of other
    executions."""
    local = ready_local
    local.harness.write(FIND_IN_MEMORY)
    parameter_secret = secrets.token_hex(16)
    before, before_token = local.harness.payload(
        "find_in_memory", parameters={"head": "-", "tail": "-", "password": parameter_secret}
    )
    before_spec = local.spec(before, before_token).model_copy(update={"payload": before})
    await local.backend.launch(before_spec)
    assert (await local.next_exit()).exit_code == 0
    assert before_spec.nats_credentials is not None
    inherited = [before_token, before_spec.nats_credentials.seed, parameter_secret]

    found = []
    for secret in inherited:  # each run by a spare made after the first run's claim went through the template
        half = len(secret) // 2
        payload = await local.launch("find_in_memory", parameters={"head": secret[:half], "tail": secret[half:]})
        assert (await local.next_exit()).exit_code == 0
        found.append(await _result(local.harness, payload.execution_id))

    assert found == [0, 0, 0]


def _runner_connections(nats: NatsServer, execution_id: str) -> list[object]:
    """The ids of the NATS connections of the runner of `execution_id`."""
    name = f"bifrost-runner {execution_id}"
    return [connection["cid"] for connection in nats.connections() if connection.get("name") == name]


async def _connected_ready_id(local: LocalRun) -> tuple[str, object]:
    """An execution id the backend gives out, once its ready runner is connected; and that connection's id."""
    deadline = time.monotonic() + 60
    while (execution_id := local.backend.ready_execution_id()) is None:
        assert time.monotonic() < deadline, "the backend never had a ready execution id"
        await asyncio.sleep(0.05)
    while not (connections := await asyncio.to_thread(_runner_connections, local.harness.nats, execution_id)):
        assert time.monotonic() < deadline, f"no runner connected to NATS for {execution_id} ahead of its launch"
        await asyncio.sleep(0.05)
    (connection,) = connections
    return execution_id, connection


async def test_a_run_given_a_ready_id_runs_on_the_connection_its_runner_made_while_waiting(
    ready_local: LocalRun, tmp_path: Path
) -> None:
    ready_local.harness.write(WAIT_FOR_MARKER)
    marker = shared_folder(tmp_path) / "go"
    execution_id, waiting_connection = await _connected_ready_id(ready_local)

    await ready_local.launch_as(execution_id, "wait_for", parameters={"marker": str(marker)})
    await ready_local.harness.events(execution_id, until=logged("waiting"))
    running_connections = await asyncio.to_thread(_runner_connections, ready_local.harness.nats, execution_id)
    marker.touch()

    assert running_connections == [waiting_connection]
    assert isinstance(await _result(ready_local.harness, execution_id), int)
    assert (await ready_local.next_exit()).exit_code == 0


async def test_runs_of_other_ids_run_under_their_own_identity_while_spares_wait_ready(ready_local: LocalRun) -> None:
    ready_local.harness.write("""
        from bifrost import workflow

        @workflow
        def hello(n: int):
            return n
    """)
    await _connected_ready_id(ready_local)
    launched = [await ready_local.launch("hello", parameters={"n": n}) for n in range(3)]
    for _ in launched:
        assert (await ready_local.next_exit()).exit_code == 0
    execution_id, _ = await _connected_ready_id(ready_local)
    await ready_local.launch_as(execution_id, "hello", parameters={"n": 3})

    results = [await _result(ready_local.harness, payload.execution_id) for payload in launched]
    assert [*results, await _result(ready_local.harness, execution_id)] == [0, 1, 2, 3]
    assert (await ready_local.next_exit()).exit_code == 0


async def test_a_run_outliving_the_identity_its_runner_was_ready_with_reports_to_its_end(
    harness: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """NATS ends a connection whose identity expires: the runner reconnects under its claim's identity before."""
    monkeypatch.setattr(local_backend, "READY_IDENTITY_SECONDS", 6.0)
    harness.write("""
        import asyncio
        from bifrost import workflow

        @workflow
        async def ticks(count: int):
            for n in range(count):
                print(f"tick {n}")
                await asyncio.sleep(0.25)
            return count
    """)
    settings = local_settings(harness, tmp_path)
    backend, exits = await _started_backend(settings, ready_on=harness.nats)
    local = LocalRun(harness, settings, backend, exits)
    try:
        execution_id, waiting_connection = await _connected_ready_id(local)
        await local.launch_as(execution_id, "ticks", parameters={"count": 32})
        await harness.events(execution_id, until=logged("tick 0"))
        assert await asyncio.to_thread(_runner_connections, harness.nats, execution_id) == [waiting_connection]

        assert await _result(harness, execution_id) == 32
        logs = [stored.event for stored in await harness.events(execution_id) if stored.event.type == "log"]
        assert [record.message for event in logs for record in event.records] == [f"tick {n}" for n in range(32)]
        assert (await local.next_exit()).exit_code == 0
    finally:
        await backend.stop()


async def test_spares_are_replaced_before_the_identity_they_wait_with_expires(
    harness: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(local_backend, "READY_IDENTITY_SECONDS", 2.0)
    harness.write("""
        from bifrost import workflow

        @workflow
        def hello():
            return "hello"
    """)
    settings = local_settings(harness, tmp_path)
    backend, exits = await _started_backend(settings, ready_on=harness.nats)
    local = LocalRun(harness, settings, backend, exits)
    try:
        await _connected_ready_id(local)  # given out, and never launched
        await asyncio.sleep(5)  # past the lifetime of several identities
        execution_id, _ = await _connected_ready_id(local)
        await local.launch_as(execution_id, "hello")

        assert await _result(harness, execution_id) == "hello"
        assert (await local.next_exit()).exit_code == 0
    finally:
        await backend.stop()
