"""Runner cgroups on the machine's real cgroup file system: their limits hold for a runner and every process it
starts, a runner over its memory limit is known as such, and nothing a runner left behind outlives its cgroup;
the local backend puts each spare in one with the default limits, gives a run its workflow's, fails a run the
memory limit ended naming the limit, and removes the cgroup, with whatever the run left, when the run ends.

Each test runs on each cgroup version the machine lets the tests' user make runner cgroups in, and is skipped
with the reason elsewhere."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from bifrost._internal.protocol import ExecutionStatus
from control_plane.backends.base import RunnerExit, RunnerResources
from control_plane.backends.local import LocalBackend
from control_plane.backends.local_cgroups import (
    UNIFIED,
    CgroupsUnavailable,
    RunnerCgroup,
    RunnerCgroups,
    _own_cgroups,
    _unified_mount,
)
from tests.runner.conftest import Harness, logged
from tests.runner.test_local_backend import (
    WAIT_FOR_MARKER,
    LocalRun,
    _stalled_until_exists,
    _started_backend,
    launch_spec,
    local_settings,
    shared_folder,
)

MB = 1024 * 1024


def _found(version: int) -> RunnerCgroups:
    try:
        return RunnerCgroups.find(f"bifrost-test-{uuid.uuid4().hex[:8]}", versions=(version,))
    except CgroupsUnavailable as unavailable:
        pytest.skip(f"runner cgroups cannot be made here: {unavailable}")


def _remove_all(cgroups: RunnerCgroups) -> None:
    for name in cgroups.leftovers():
        cgroups.get(name).remove()
    for parent in cgroups.parents.values():
        parent.rmdir()


@pytest.fixture(params=[2, 1], ids=["v2", "v1"])
def cgroups(request: pytest.FixtureRequest) -> Iterator[RunnerCgroups]:
    found = _found(request.param)
    yield found
    _remove_all(found)


def _memory_limit(cgroup: RunnerCgroup) -> int:
    if UNIFIED in cgroup.folders:
        return int((cgroup.folders[UNIFIED] / "memory.max").read_text())
    return int((cgroup.folders["memory"] / "memory.limit_in_bytes").read_text())


def _process_limit(cgroup: RunnerCgroup) -> str:
    return (cgroup.folders.get(UNIFIED) or cgroup.folders["pids"]).joinpath("pids.max").read_text().strip()


def _members(cgroup: RunnerCgroup) -> list[set[int]]:
    """The processes in each folder of `cgroup`."""
    return [{int(pid) for pid in (folder / "cgroup.procs").read_text().split()} for folder in cgroup.folders.values()]


def _start(script: str) -> subprocess.Popen[str]:
    """A process that waits for a line on stdin before it runs `script`, so it can be put in a cgroup first."""
    code = "import sys\nsys.stdin.readline()\n" + textwrap.dedent(script)
    return subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _alive(pid: int) -> bool:
    """Whether `pid` runs (an orphan killed may stay a zombie until init reaps it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _run_in(
    cgroups: RunnerCgroups, name: str, script: str, memory_mb: int = 256, processes: int | None = None
) -> tuple[RunnerCgroup, int, str, str]:
    cgroup = cgroups.make(name, memory_mb * MB, processes)
    process = _start(script)
    cgroup.join(process.pid)
    out, err = process.communicate("go\n", timeout=60)
    return cgroup, process.returncode, out, err


# A runner's memory is in pages it touched, not in what it reserved.
HUNGRY = "data = b'x' * (400 * 1024 * 1024)\nprint('survived')\n"


def test_a_runner_over_its_memory_limit_is_killed_and_known_to_be(cgroups: RunnerCgroups) -> None:
    cgroup, code, _, _ = _run_in(cgroups, "hungry", HUNGRY)
    assert code == -9
    assert cgroup.memory_limit_reached()


def test_a_runner_within_its_memory_limit_is_not_reported_over_it(cgroups: RunnerCgroups) -> None:
    cgroup, code, out, _ = _run_in(cgroups, "modest", "data = b'x' * (20 * 1024 * 1024)\nprint('survived')\n")
    assert (code, out.strip()) == (0, "survived")
    assert not cgroup.memory_limit_reached()


def test_the_process_limit_counts_every_process_the_runner_starts(cgroups: RunnerCgroups) -> None:
    script = """
        import os, time
        started = 0
        try:
            for _ in range(40):
                if os.fork() == 0:
                    time.sleep(5)
                    os._exit(0)
                started += 1
        except BlockingIOError:
            pass
        print(started)
        """
    cgroup, code, out, _ = _run_in(cgroups, "forker", script, processes=10)
    assert code == 0
    assert int(out) == 9  # the runner itself is the tenth
    cgroup.remove()


def test_limits_change_both_ways(cgroups: RunnerCgroups) -> None:
    cgroup = cgroups.make("changing", 256 * MB, 10)

    cgroup.set_limits(64 * MB, 20)
    assert (_memory_limit(cgroup), _process_limit(cgroup)) == (64 * MB, "20")
    cgroup.set_limits(512 * MB, None)
    assert (_memory_limit(cgroup), _process_limit(cgroup)) == (512 * MB, "max")


def test_joining_moves_a_process_with_every_process_it_started(cgroups: RunnerCgroups) -> None:
    script = """
        import os, time
        if os.fork() == 0:
            if os.fork() == 0:
                print("started", flush=True)  # the last of the three
                time.sleep(600)
            os.wait()
        os.wait()
        """
    process = _start(script)
    try:
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write("go\n")
        process.stdin.flush()
        assert process.stdout.readline().strip() == "started"
        cgroup = cgroups.make("tree", 256 * MB, None)

        cgroup.join_tree(process.pid)

        for members in _members(cgroup):
            assert len(members) == 3 and process.pid in members
    finally:
        cgroups.get("tree").remove()
        process.wait(timeout=30)


def test_removing_a_runner_cgroup_kills_what_the_runner_left_behind(cgroups: RunnerCgroups, tmp_path: Path) -> None:
    pid_file = tmp_path / "daemon.pid"
    script = f"""
        import os, time
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                for fd in (0, 1, 2):
                    os.dup2(os.open(os.devnull, os.O_RDWR), fd)
                open({str(pid_file)!r}, "w").write(str(os.getpid()))
                time.sleep(600)
            os._exit(0)
        os.wait()
        """
    cgroup, code, _, _ = _run_in(cgroups, "daemonizer", script)
    assert code == 0
    deadline = time.monotonic() + 30
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline, "the daemon never started"
        time.sleep(0.05)
    daemon = int(pid_file.read_text())
    assert _alive(daemon)  # it outlived the runner

    cgroup.remove()

    assert not _alive(daemon)
    assert all(not folder.exists() for folder in cgroup.folders.values())
    assert cgroups.leftovers() == []


def test_a_cgroup_left_by_an_earlier_runner_of_that_name_is_replaced(cgroups: RunnerCgroups) -> None:
    first = cgroups.make("reused", 64 * MB, 5)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    first.join(sleeper.pid)

    second = cgroups.make("reused", 128 * MB, None)

    assert sleeper.wait(timeout=30) == -9
    assert (_memory_limit(second), _process_limit(second)) == (128 * MB, "max")
    assert cgroups.leftovers() == ["reused"]


def test_the_control_planes_cgroups_are_read_from_proc() -> None:
    """Found on every machine, whichever hierarchies it has: the control plane's cgroup in each, and where the
    unified one is mounted (a v2-only machine, one with both, and a cgroup namespace's own mount)."""
    own = _own_cgroups("12:pids:/user.slice\n4:memory:/user.slice/session-1.scope\n1:name=systemd:/x\n0::/x/y\n")
    mounts = (
        "30 25 0:26 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw\n"
        "31 25 0:27 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory\n"
    )

    assert own == {
        "pids": "/user.slice",
        "memory": "/user.slice/session-1.scope",
        "name=systemd": "/x",
        UNIFIED: "/x/y",
    }
    assert _unified_mount(mounts) == (Path("/sys/fs/cgroup/unified"), "/")
    assert _unified_mount("40 1 0:30 /ns /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n") == (
        Path("/sys/fs/cgroup"),
        "/ns",
    )
    assert _unified_mount(mounts.splitlines()[1]) is None


# The local backend.


@pytest.fixture
def backend_cgroups() -> Iterator[None]:
    """Skips unless the backend can make runner cgroups here."""
    _remove_all(_found(2) if _v2_usable() else _found(1))
    yield


def _v2_usable() -> bool:
    try:
        _remove_all(RunnerCgroups.find(f"bifrost-test-{uuid.uuid4().hex[:8]}", versions=(2,)))
    except CgroupsUnavailable:
        return False
    return True


@contextlib.asynccontextmanager
async def _backend(harness: Harness, tmp_path: Path, **fields: Any) -> AsyncIterator[LocalRun]:
    settings = local_settings(harness, tmp_path, **fields)
    exits: asyncio.Queue[RunnerExit] = asyncio.Queue()

    async def on_exit(runner_exit: RunnerExit) -> None:
        await exits.put(runner_exit)

    backend = LocalBackend(settings)
    await backend.start(on_exit)
    try:
        assert backend.cgroups is not None
        yield LocalRun(harness, settings, backend, exits)
    finally:
        await backend.stop()
        # No spare's cgroup is left either, nor the folder they were in.
        assert all(not parent.exists() for parent in backend.cgroups.parents.values())


@pytest.fixture
async def local(harness: Harness, tmp_path: Path, backend_cgroups: None) -> AsyncIterator[LocalRun]:
    async with _backend(harness, tmp_path) as run:
        yield run


async def _eventually(check: Any, what: str) -> Any:
    deadline = time.monotonic() + 60
    while not (found := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)
    return found


def _children(pid: int) -> list[str]:
    return [child for task in Path(f"/proc/{pid}/task").iterdir() for child in (task / "children").read_text().split()]


def _spare_cgroup(cgroups: RunnerCgroups, template_pid: int) -> RunnerCgroup | None:
    """The cgroup of a spare the template forked, once the spare is in it (a child of the template may also be a
    throwaway fork of its own, which gets none)."""
    for task in Path(f"/proc/{template_pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            cgroup = cgroups.get(f"spare-{child}")
            try:
                if all(int(child) in members for members in _members(cgroup)):
                    return cgroup
            except FileNotFoundError:
                continue
    return None


async def test_a_spare_waits_in_a_cgroup_of_its_own_with_the_default_limits(local: LocalRun) -> None:
    cgroups = local.backend.cgroups
    assert cgroups is not None and local.backend.template_pid is not None

    cgroup = await _eventually(lambda: _spare_cgroup(cgroups, local.backend.template_pid or 0), "a spare's cgroup")

    assert _memory_limit(cgroup) == local.settings.local_memory_limit_mb * MB
    # Sandboxed, a runner's keeper is in its cgroup too.
    assert _process_limit(cgroup) == str(local.settings.local_max_processes + 1)


CGROUP_OF_RUN = """
    from pathlib import Path
    from bifrost import workflow

    @workflow
    def cgroup_of_run(marker: str):
        Path(marker).write_text(Path("/proc/self/cgroup").read_text())
"""


async def test_a_runner_forked_for_its_claim_runs_it_only_once_in_its_cgroup(
    harness: Harness, tmp_path: Path, backend_cgroups: None
) -> None:
    """No spare waits: the runner is forked with its claim. This event loop, held up from the moment it is forked,
    keeps the backend from moving it into its cgroup: the runner waits for that before it runs."""
    harness.write(CGROUP_OF_RUN)
    settings = local_settings(harness, tmp_path).model_copy(update={"local_pool_size": 0})
    backend, exits = await _started_backend(settings)
    marker = shared_folder(tmp_path) / "cgroup"
    payload, token = harness.payload("cgroup_of_run", parameters={"marker": str(marker)})
    try:
        launching = asyncio.create_task(backend.launch(launch_spec(harness, payload, token)))
        assert backend.template_pid is not None
        for _step in range(10_000):  # one step of the event loop at a time, until the runner is forked
            await asyncio.sleep(0)
            if _children(backend.template_pid):
                break
        _stalled_until_exists(marker, within=2.0)
        await launching
        _stalled_until_exists(marker, within=60)
        runner_exit = await asyncio.wait_for(exits.get(), timeout=60)
        assert (runner_exit.execution_id, runner_exit.exit_code) == (payload.execution_id, 0)
        assert backend.cgroups is not None
        parents = [parent.name for parent in backend.cgroups.parents.values()]
    finally:
        await backend.stop()

    # The workflow ran in a runner cgroup, not the control plane's.
    assert all(name in marker.read_text() for name in parents)


async def test_a_run_has_its_own_cgroup_with_its_workflows_limits_until_it_ends(
    local: LocalRun, tmp_path: Path
) -> None:
    local.harness.write(WAIT_FOR_MARKER)
    marker = shared_folder(tmp_path) / "go"
    payload, token = local.harness.payload("wait_for", parameters={"marker": str(marker)})
    spec = launch_spec(local.harness, payload, token).model_copy(
        update={"resources": RunnerResources(memory_limit_mb=300)}
    )
    await local.backend.launch(spec)
    await local.harness.events(payload.execution_id, until=logged("waiting"))
    assert local.backend.cgroups is not None
    cgroup = local.backend.cgroups.get(payload.execution_id)
    keeper = int(local.backend.runner_ref(payload.execution_id) or 0)

    for members in _members(cgroup):
        assert keeper in members and len(members) >= 2  # the keeper and the runner it started
    assert _memory_limit(cgroup) == 300 * MB

    marker.touch()
    runner_exit = await local.next_exit()

    assert runner_exit.exit_code == 0
    assert all(not folder.exists() for folder in cgroup.folders.values())


HOG = """
    from bifrost import workflow

    @workflow
    def hog(megabytes: int):
        block = b"x" * (megabytes * 1024 * 1024)
        return len(block)
"""


async def test_a_run_over_its_memory_limit_fails_naming_the_limit(local: LocalRun) -> None:
    local.harness.write(HOG)
    payload, token = local.harness.payload("hog", parameters={"megabytes": 400})
    spec = launch_spec(local.harness, payload, token).model_copy(
        update={"resources": RunnerResources(memory_limit_mb=128)}
    )

    await local.backend.launch(spec)
    runner_exit = await local.next_exit()

    assert (runner_exit.exit_code, runner_exit.reason) == (None, "memory limit of 128 MB reached")
    # Within the limit, memory is there to use: no limit of its address space, which counts far more than the
    # memory the runner uses, holds it at less.
    payload, token = local.harness.payload("hog", parameters={"megabytes": 200})
    within = launch_spec(local.harness, payload, token).model_copy(
        update={"resources": RunnerResources(memory_limit_mb=256)}
    )
    await local.backend.launch(within)
    assert (await local.next_exit()).exit_code == 0
    finished = (await local.harness.events(within.execution_id))[-1].event
    assert finished.type == "finished" and finished.status is ExecutionStatus.SUCCESS


async def test_what_an_unsandboxed_run_leaves_behind_ends_with_its_cgroup(
    harness: Harness, tmp_path: Path, backend_cgroups: None
) -> None:
    pid_file = shared_folder(tmp_path) / "daemon.pid"
    harness.write(f"""
        import os
        import time
        from bifrost import workflow

        @workflow
        def daemonize():
            if os.fork() == 0:
                os.setsid()
                if os.fork() == 0:
                    for fd in (0, 1, 2):
                        os.dup2(os.open(os.devnull, os.O_RDWR), fd)
                    open({str(pid_file)!r} + ".tmp", "w").write(str(os.getpid()))
                    os.rename({str(pid_file)!r} + ".tmp", {str(pid_file)!r})
                    time.sleep(600)
                os._exit(0)
            os.wait()
            while not os.path.exists({str(pid_file)!r}):
                time.sleep(0.01)
            return "left one behind"
    """)
    async with _backend(harness, tmp_path, local_sandbox="none") as local:
        payload = await local.launch("daemonize")
        assert local.backend.cgroups is not None
        cgroup = local.backend.cgroups.get(payload.execution_id)
        runner_exit = await local.next_exit()
        daemon = int(pid_file.read_text())

    assert runner_exit.exit_code == 0
    assert not _alive(daemon)
    assert all(not folder.exists() for folder in cgroup.folders.values())


CROWD = """
    import subprocess
    import threading
    import time
    from bifrost import workflow

    @workflow
    def crowd(count: int, threads: bool):
        if threads:
            for _ in range(count):
                threading.Thread(target=time.sleep, args=(30,), daemon=True).start()
        else:
            children = [subprocess.Popen(["sleep", "30"]) for _ in range(count)]
        return count
"""


@pytest.mark.parametrize("threads", [False, True], ids=["processes", "threads"])
async def test_an_unsandboxed_run_over_its_process_limit_fails_naming_the_limit(
    harness: Harness, tmp_path: Path, backend_cgroups: None, threads: bool
) -> None:
    harness.write(CROWD)
    async with _backend(harness, tmp_path, local_sandbox="none", local_max_processes=20) as local:
        payload = await local.launch("crowd", parameters={"count": 40, "threads": threads})
        runner_exit = await local.next_exit()
        finished = (await local.harness.events(payload.execution_id))[-1].event

    assert runner_exit.exit_code == 11  # the workflow failed
    assert finished.type == "finished" and finished.status is ExecutionStatus.FAILED
    assert finished.error_message is not None
    assert finished.error_message.startswith("process limit of 20 processes and threads reached: could not start")
