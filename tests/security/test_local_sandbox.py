"""Local runners are sandboxed and limited, against `bifrost serve` in a subprocess as users run it (embedded NATS,
SQLite, the local backend with its defaults), run as root and as another user: a workflow cannot read the data
folder, the control plane's environment, nor see another run's processes; what one run leaves behind (in its
/tmp, /dev/shm, the workspace cache, processes left running) never reaches a later run, whoever runs it; a run
runs out of memory or processes with a reason that names the limit; the data folder is private."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from bifrost._internal.protocol import ExecutionStatus
from bifrost_devtools.services import free_port
from control_plane.backends.local_sandbox import RUNNER_UID_BASE
from tests.api.conftest import eventually

ADMIN_KEY = "bfk_local-sandbox-test-key-0123456789"
CANARY = "control-plane-canary-4b1d"
MAX_PROCESSES = 40
SPARES = 2

WORKFLOWS = """
import fcntl
import os
import struct
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
def processes():
    pids = sorted(int(name) for name in os.listdir("/proc") if name.isdigit())
    return {"pids": pids, "environ": {pid: _attempt(f"/proc/{pid}/environ") for pid in pids if pid != os.getpid()}}


@workflow
def hold(marker: str, release: str):
    Path(marker).write_text(str(os.getpid()))
    os.chmod(marker, 0o644)  # runners make their files private by default
    while not Path(release).exists():
        time.sleep(0.05)


MARK = "pristine"


def _tamper(action):
    try:
        action()
        return "done"
    except OSError as exc:
        return type(exc).__name__


def _rewrite(path):
    with open(path, "w") as module:
        module.write("MARK = 'poisoned'\\n")


def _linger(lock_path):
    # A process of its own (session, no parent left), holding `lock_path` locked while it lives, that keeps
    # trying to poison the module and /tmp. Returns once it holds the lock.
    if os.fork():
        while not _held(lock_path):
            time.sleep(0.01)
        return
    os.setsid()
    if os.fork():
        os._exit(0)
    lock = open(lock_path + ".tmp", "w")
    fcntl.flock(lock, fcntl.LOCK_EX)
    os.chmod(lock_path + ".tmp", 0o644)
    os.rename(lock_path + ".tmp", lock_path)
    while True:
        _tamper(lambda: _rewrite(__file__))
        _tamper(lambda: Path("/tmp/left-by-a-daemon").write_text("poisoned"))
        time.sleep(0.02)


def _lock_out(lock):
    # Take exclusively the lock that runs of the revision (or syncs) take shared, by each means there is: through
    # the descriptor this runner holds it with, and through new ones.
    held = [int(fd) for fd in os.listdir("/proc/self/fd") if os.path.realpath(f"/proc/self/fd/{fd}") == str(lock)]
    taken = []
    for descriptor in held + [os.open(lock, os.O_RDONLY)]:
        taken.append(_tamper(lambda: fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)))
        flock = struct.pack("hhqqi4x", fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
        taken.append(_tamper(lambda: fcntl.fcntl(descriptor, fcntl.F_OFD_SETLK, flock)))
    return taken


@workflow
def hold_off(marker: str, release: str):
    cache = Path(__file__).parents[2]
    tried = {
        "revision": _lock_out(Path(__file__).parent.with_suffix(".lock")),
        "sync": _lock_out(cache / "cache" / ".bifrost-sync.lock"),
    }
    Path(marker).write_text("tried")
    os.chmod(marker, 0o644)
    while not Path(release).exists():
        time.sleep(0.02)
    return tried


def _held(lock_path):
    try:
        with open(lock_path, "rb") as lock:
            fcntl.flock(lock, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except FileNotFoundError:
        return False
    except BlockingIOError:
        return True


@workflow(execution_mode="sync")
def poison(lock_path: str):
    cache = Path(__file__).parents[2]  # the module is in <cache>/revisions/<revision>/
    attempts = {
        "append to the module": _tamper(lambda: open(__file__, "a").write("MARK = 'poisoned'\\n")),
        "open the module up": _tamper(lambda: os.chmod(__file__, 0o666)),
        "replace the module": _tamper(lambda: os.rename(__file__, __file__ + ".old")),
        "add a module": _tamper(lambda: Path(__file__).with_name("extra.py").write_text("")),
        "rewrite the cached copy": _tamper(lambda: _rewrite(cache / "cache" / "flows.py")),
        "add to the cache": _tamper(lambda: (cache / "planted").write_text("")),
    }
    Path("/tmp/planted").write_text("poisoned")
    _tamper(lambda: Path("/dev/shm/planted").write_text("poisoned"))
    _linger(lock_path)
    return {"uid": os.getuid(), "attempts": attempts}


def _files_in(folder):
    # Not in the folders the sandbox shows inside it (the test's data folder is in /tmp).
    mount_points = {line.split()[4] for line in open("/proc/self/mountinfo")}
    found = []
    for parent, folders, files in os.walk(folder):
        folders[:] = [name for name in folders if os.path.join(parent, name) not in mount_points]
        found += [os.path.join(parent, name) for name in files]
    return found


@workflow
def victim(release: str):
    while not Path(release).exists():
        time.sleep(0.02)
    return {
        "uid": os.getuid(),
        "mark": MARK,
        "tmp": _files_in("/tmp"),
        "shm": _files_in("/dev/shm"),
        "pids": sorted(int(name) for name in os.listdir("/proc") if name.isdigit()),
        "module": __file__,
    }


@workflow(execution_mode="sync")
def hog(megabytes: int):
    block = bytearray(megabytes * 1024 * 1024)
    return len(block)


@workflow(execution_mode="sync", resources={"memory_limit_mb": 256})
def small_hog(megabytes: int):
    block = bytearray(megabytes * 1024 * 1024)
    return len(block)


@workflow(execution_mode="sync", resources={"memory_limit_mb": 256})
def c_hog():
    import ctypes

    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
    while block := libc.malloc(16 * 1024 * 1024):
        libc.memset(block, 1, 16 * 1024 * 1024)
    libc.abort()  # as C code that finds no memory left does


@workflow(execution_mode="sync")
def cgroup():
    return {"execution": os.environ["BIFROST_EXECUTION_ID"], "cgroups": open("/proc/self/cgroup").read().split()}


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
    kind: str
    """`root` or `non-root`, the user `bifrost serve` runs as (see `_as`)."""

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def shared(self) -> Path:
        return self.root / "shared"

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=120)

    def run(self, workflow: str, org: str | None = None, **parameters: Any) -> dict[str, Any]:
        """Run `workflow` to its end, for the organization `org` (the admin's own by default)."""
        with self.client() as client:
            response = client.post(
                f"/api/workflows/{workflow}/execute",
                json={"parameters": parameters},
                headers={"X-Bifrost-Org": org} if org else {},
            )
        assert response.status_code == 200, response.text
        execution: dict[str, Any] = response.json()
        return execution

    def result(self, workflow: str, org: str | None = None, **parameters: Any) -> Any:
        execution = self.run(workflow, org, **parameters)
        assert execution["status"] == ExecutionStatus.SUCCESS, execution["error"]
        return execution["result"]

    def start(self, workflow: str, org: str | None = None, **parameters: Any) -> str:
        """Start `workflow` in the background; its execution id."""
        with self.client() as client:
            response = client.post(
                f"/api/workflows/{workflow}/execute",
                params={"sync": "false"},
                json={"parameters": parameters},
                headers={"X-Bifrost-Org": org} if org else {},
            )
        assert response.status_code == 202, response.text
        execution_id: str = response.json()["execution_id"]
        return execution_id

    def execution(self, execution_id: str) -> dict[str, Any]:
        with self.client() as client:
            execution: dict[str, Any] = client.get(f"/api/executions/{execution_id}").json()
        return execution

    def new_org(self) -> str:
        with self.client() as client:
            created = client.post("/api/orgs", json={"name": f"org-{uuid.uuid4().hex[:8]}"})
        assert created.status_code in (200, 201), created.text
        org_id: str = created.json()["id"]
        return org_id


def _ready(served: Served) -> bool:
    if served.process.poll() is not None:
        raise AssertionError(f"bifrost serve exited: {(served.root / 'serve.log').read_text()[-3000:]}")
    try:
        with served.client() as client:
            names = {
                "snoop",
                "processes",
                "hold",
                "hold_off",
                "poison",
                "victim",
                "hog",
                "small_hog",
                "c_hog",
                "spawn",
                "cgroup",
            }
            return names <= {workflow["name"] for workflow in client.get("/api/workflows").json()}
    except httpx.HTTPError:
        return False


NON_ROOT_USER = 1000
"""The user a non-root control plane runs as, when the tests run as root."""


def _as(kind: str) -> list[str]:
    """What runs `bifrost serve` as root, or as another user: when the tests run as root, in a user namespace
    where it is user NON_ROOT_USER (root's files stay its own, but it has no privilege)."""
    if kind == "root":
        if os.geteuid() != 0:
            pytest.skip("the tests do not run as root")
        return []
    if os.geteuid() != 0:
        return []
    unshare = shutil.which("unshare")
    if unshare is None or "--map-user" not in subprocess.run([unshare, "--help"], capture_output=True).stdout.decode():
        pytest.skip("needs util-linux's unshare with --map-user to run a non-root control plane")
    return [unshare, "--user", f"--map-user={NON_ROOT_USER}", f"--map-group={NON_ROOT_USER}"]


@pytest.fixture(scope="module", params=["root", "non-root"])
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    prefix = _as(request.param)
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
        "BIFROST_LOCAL_POOL_SIZE": str(SPARES),
        "BIFROST_CANARY": CANARY,
    }
    with (root / "serve.log").open("wb") as log:
        process = subprocess.Popen(
            [*prefix, str(Path(sys.executable).with_name("bifrost")), "serve", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    served = Served(root, process, f"http://127.0.0.1:{port}", request.param)
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


def test_a_workflow_sees_no_other_runs_processes(served: Served) -> None:
    marker, release = served.shared / f"holder-{uuid.uuid4().hex}", served.shared / f"release-{uuid.uuid4().hex}"
    with served.client() as client:
        started = client.post(
            "/api/workflows/hold/execute",
            params={"sync": "false"},
            json={"parameters": {"marker": str(marker), "release": str(release)}},
        )
    assert started.status_code == 202, started.text
    try:
        eventually(lambda: marker.exists() and marker.read_text(), within=90, what="the holding runner to start")
        seen = served.result("processes")
    finally:
        release.touch()

    # Its own process and its keeper (the first of its PID namespace), nothing else: the holding run runs meanwhile.
    assert seen["pids"] == [1, 2]
    assert seen["environ"] == {"1": "PermissionError"}


def test_what_a_run_leaves_behind_never_reaches_another_run(served: Served) -> None:
    """Runs of two organizations one after the other, as the same user where runners have users of their own:
    the first tries to change the code the next ones run, leaves files in /tmp and /dev/shm, and a process behind
    that keeps trying; the next ones run the code as it was and find nothing of it."""
    org_a, org_b = served.new_org(), served.new_org()
    lock = served.shared / f"linger-{uuid.uuid4().hex}"

    poisoned = served.result("poison", org_a, lock_path=str(lock))

    assert len(poisoned["attempts"]) == 6
    assert {attempt: outcome for attempt, outcome in poisoned["attempts"].items() if outcome == "done"} == {}
    # The process the run left held this lock: it is free once the run is over.
    eventually(lambda: lock.exists() and _lock_is_free(lock), within=60, what="the lingering process to end")
    # The next runs, of the other organization, at once: as many as it takes for one to get the first run's user
    # (runners of a root control plane have users of their own: the spares' first, then the lowest free ones; those
    # of a non-root one all share its user).
    release = served.shared / f"release-{uuid.uuid4().hex}"
    count = SPARES + poisoned["uid"] - RUNNER_UID_BASE + 1 if poisoned["uid"] >= RUNNER_UID_BASE else 1
    started = [served.start("victim", org_b, release=str(release)) for _ in range(count)]
    eventually(
        lambda: all(served.execution(execution_id)["status"] == "Running" for execution_id in started),
        within=90,
        what="the next runs to start",
    )
    release.touch()
    victims = [_result_of(served, execution_id) for execution_id in started]
    assert poisoned["uid"] in {seen["uid"] for seen in victims}
    for seen in victims:
        assert (seen["mark"], seen["tmp"], seen["shm"], seen["pids"]) == ("pristine", [], [], [1, 2])
    checkout = Path(victims[0]["module"])
    assert hashlib.sha256(checkout.read_bytes()).digest() == hashlib.sha256(WORKFLOWS.encode()).digest()
    assert not (served.data_dir / "runner-cache" / "planted").exists()
    # What the runs left in their folders was removed with them.
    assert eventually(lambda: _runs_folders(served) == set(), within=30, what="the runs' folders to be removed")


def test_a_run_cannot_hold_off_other_runs_of_its_revision(served: Served) -> None:
    """Runs of a revision hold its checkout's lock shared, and syncs the cache's exclusively: a workflow taking
    either exclusively, as it may try by every descriptor it can have, would keep other organizations' runs
    waiting."""
    org_a, org_b = served.new_org(), served.new_org()
    marker, release = served.shared / f"tried-{uuid.uuid4().hex}", served.shared / f"release-{uuid.uuid4().hex}"
    holding = served.start("hold_off", org_a, marker=str(marker), release=str(release))
    try:
        eventually(marker.exists, within=90, what="the run to try to lock the others out")
        release_now = served.shared / f"release-{uuid.uuid4().hex}"
        release_now.touch()
        meanwhile = _result_of(served, served.start("victim", org_b, release=str(release_now)))
    finally:
        release.touch()

    assert meanwhile["mark"] == "pristine"
    assert _result_of(served, holding) is not None


def _result_of(served: Served, execution_id: str) -> Any:
    execution = eventually(
        lambda: (found := served.execution(execution_id))["status"] not in ("Pending", "Running") and found,
        within=90,
        what=f"execution {execution_id} to finish",
    )
    assert execution["status"] == ExecutionStatus.SUCCESS, execution["error"]
    return execution["result"]


def _lock_is_free(path: Path) -> bool:
    with path.open("rb") as file:
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
    return True


def _runs_folders(served: Served) -> set[str]:
    """The folders of runs in the sandbox's temporary folder (the spares' aside)."""
    folder = served.data_dir / "runner-tmp"
    return {entry.name for entry in folder.iterdir() if entry.is_dir() and len(entry.name) == 36}


def _in_cgroups(served: Served) -> bool:
    """Whether runners get cgroups of their own: then each run is in one named after its execution (its v1 memory
    cgroup where there is one, else its v2 cgroup); else the control plane says that they do not."""
    seen = served.result("cgroup")
    memory = [line for line in seen["cgroups"] if ":memory:" in line] or [
        line for line in seen["cgroups"] if line.startswith("0::")
    ]
    own = memory[0].endswith("/" + seen["execution"])
    said = "local runners get no cgroups of their own" in (served.root / "serve.log").read_text()
    assert own != said, seen
    return own


def test_a_run_has_a_cgroup_of_its_own_or_the_control_plane_says_why_not(served: Served) -> None:
    in_cgroups = _in_cgroups(served)

    if served.kind == "non-root" and os.geteuid() != 0:  # a user with no rights to cgroups not delegated to it
        assert not in_cgroups


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


def test_a_runner_killed_at_the_memory_limit_fails_naming_the_limit(served: Served) -> None:
    execution = served.run("c_hog")

    assert execution["status"] == ExecutionStatus.FAILED
    assert execution["error"]["type"] == "RunnerExited"
    if _in_cgroups(served):  # its cgroup's OOM killer ended it
        assert execution["error"]["message"] == "memory limit of 256 MB reached"
    else:  # its address space full, malloc found no memory
        assert execution["error"]["message"] == "memory limit of 256 MB reached (runner killed by signal 6 (SIGABRT))"


def test_too_many_processes_are_refused_naming_the_limit(served: Served) -> None:
    if served.kind == "non-root" and os.geteuid() == 0:
        pytest.skip("Linux counts no processes of the machine's root, whatever user it is in a user namespace")
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
