"""The sandbox of local runners: the runner template, and so every runner it forks, runs inside bubblewrap
(`bwrap`) namespaces.

- Its own PID namespace: the control plane's processes (and those of anything else on the machine) are not
  there to be seen in /proc or signalled. The template's first process stays as the namespace's init, so that
  runners outlive a template that dies and a control plane that restarts.
- Its own mount namespace, holding only what runners need: the system's programs and libraries (/usr, /etc, …,
  read-only), the Python installation and the runner's code (read-only), the workspace folder (read-only), the
  runners' log folder, their workspace cache, a temporary folder (`{data_dir}/runner-tmp`, seen as /tmp) and the
  folders of `local_sandbox_paths`. The rest of the data folder (keys, database, NATS store) is not there.
- No capabilities but those the template needs: to confine each runner to PID, mount and IPC namespaces of its
  own (see `bifrost_runner.confinement`: its own /tmp and /dev/shm in the temporary folder, the workspace cache
  read-only, the log folder hidden, and no process left once the run ends), and under a root control plane to give
  each runner a user of its own (`RUNNER_UID_BASE` on) as its workflow starts and to let spares wait at low
  priority. A non-root control plane's sandbox is a user namespace in which the template is root (the control
  plane's user outside), and each runner a user namespace of its own, as the control plane's user. Either way a
  runner cannot read another's /proc/<pid>/environ or memory: it is not dumpable (see `bifrost_runner.zygote`),
  and it sees no other run's processes.

Runners see the network as the control plane does: they reach NATS and the API like any client.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from control_plane.settings import Settings

log = logging.getLogger(__name__)

RUNNER_UID_BASE = 200_000
"""Under a root control plane, runners get users (and groups) of their own from this id on (see
`bifrost_runner.zygote.RUNNER_UIDS` for how many)."""
SANDBOX_TMP = "/tmp"
_SYSTEM_FOLDERS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/etc")
_PROBE_TIMEOUT_SECONDS = 30
_ExcInfo = tuple[type[BaseException], BaseException, Any]


class SandboxError(RuntimeError):
    """Local runners cannot be sandboxed on this machine."""


def runs_as_root() -> bool:
    return os.geteuid() == 0


def _code_folders() -> list[Path]:
    """The Python installation (the virtual environment and the interpreter's) and the runner's own code."""
    folders = [Path(sys.prefix), Path(sys.base_prefix), Path(os.path.realpath(sys.executable)).parent.parent]
    # Found, not imported: the control plane never imports the runner's code.
    specs = [importlib.util.find_spec(package) for package in ("bifrost", "bifrost_runner")]
    folders += [Path(spec.origin).parent.parent for spec in specs if spec is not None and spec.origin]
    return [folder.resolve() for folder in folders if folder.exists()]


def _outermost(folders: list[Path]) -> list[Path]:
    """`folders` without those inside another one of them, parents first."""
    kept: list[Path] = []
    for folder in sorted(set(folders), key=lambda path: len(path.parts)):
        if not any(folder.is_relative_to(parent) for parent in kept):
            kept.append(folder)
    return kept


def runner_tmp_dir(settings: Settings) -> Path:
    """Where each confined run gets its /tmp and /dev/shm, in a folder named after its execution."""
    return settings.data_dir.resolve() / "runner-tmp"


def runner_cache_dir(settings: Settings) -> Path:
    """The sandboxed runners' workspace cache, one for all of them (at the same path inside the sandbox)."""
    if settings.runner_workspace_cache_dir is not None:
        return Path(settings.runner_workspace_cache_dir).resolve()
    return settings.data_dir.resolve() / "runner-cache"


CACHE_LAYOUT_FILE = ".bifrost-cache-layout"
CACHE_LAYOUT = "read-only-to-runners 1\n"
"""Written in the workspace cache once it holds only what runners wrote before their workflow started: a cache
without it (made by earlier versions, where workflows could write it) is emptied first."""


def template_options(settings: Settings, log_folder: Path) -> list[str]:
    """The runner template's options for confined runners (see `bifrost_runner.zygote`)."""
    options = [
        "--runner-tmp", SANDBOX_TMP,
        "--runner-cache", str(runner_cache_dir(settings)),
        "--runner-logs", str(log_folder.resolve()),
    ]  # fmt: skip
    if runs_as_root():
        return [*options, "--runner-uid-base", str(RUNNER_UID_BASE)]
    return [*options, "--runner-user-namespaces"]


def sandbox_command(settings: Settings, log_folder: Path) -> list[str]:
    """The `bwrap` command line that runs a command (appended to it) as the local runners' sandbox."""
    data_dir = settings.data_dir.resolve()
    command = [
        "bwrap",
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--as-pid-1",
        "--new-session",
    ]
    # CAP_SYS_ADMIN: to give each runner namespaces of its own (`bifrost_runner.confinement`).
    caps: tuple[str, ...]
    if runs_as_root():
        # To switch runners to their users, and to wait at low CPU priority until the claim (`zygote`).
        caps = ("CAP_SYS_ADMIN", "CAP_SETUID", "CAP_SETGID", "CAP_SYS_NICE")
    else:
        # Root in a user namespace of one level (the control plane's user outside), so that it owns the sandbox's
        # namespaces; CAP_SETFCAP lets a runner map that root to its own user namespace.
        command += ["--unshare-user", "--uid", "0", "--gid", "0"]
        caps = ("CAP_SYS_ADMIN", "CAP_SETFCAP")
    command += ["--cap-drop", "ALL", *(arg for cap in caps for arg in ("--cap-add", cap))]
    for system in _SYSTEM_FOLDERS:
        if os.path.islink(system):
            command += ["--symlink", os.readlink(system), system]
        elif os.path.isdir(system):
            command += ["--ro-bind", system, system]
    command += ["--proc", "/proc", "--dev", "/dev"]
    # (destination, options): mounted parents first, so that none hides another.
    mounts: list[tuple[Path, list[str]]] = [(Path(SANDBOX_TMP), ["--bind", str(runner_tmp_dir(settings))])]
    read_only = _code_folders()
    if settings.workspace_dir is not None and settings.workspace_dir.exists():
        read_only.append(settings.workspace_dir.resolve())
    mounts += [(folder, ["--ro-bind", str(folder)]) for folder in _outermost(read_only)]
    # A folder bound read-only (the project folder of a virtual environment, say) may hold the data folder.
    if any(data_dir.is_relative_to(folder) for folder in read_only):
        mounts.append((data_dir, ["--tmpfs"]))
    writable = [log_folder.resolve(), runner_cache_dir(settings)]
    writable.extend(path.resolve() for path in settings.local_sandbox_paths)
    mounts += [(folder, ["--bind", str(folder)]) for folder in _outermost(writable)]
    for destination, options in sorted(mounts, key=lambda mount: len(mount[0].parts)):
        # bwrap would make missing parents private to root: runners with users of their own need to pass.
        command += ["--perms", "0755", "--dir", str(destination.parent), *options, str(destination)]
    return [*command, "--chdir", SANDBOX_TMP]


def prepare_sandbox(settings: Settings, log_folder: Path) -> list[str]:
    """Make the folders the sandbox binds, try it once, and return its command line; SandboxError, naming what
    is missing, when it does not work here."""
    if shutil.which("bwrap") is None:
        raise SandboxError(
            "local runners run in a bubblewrap sandbox, but `bwrap` is not installed: install it (Debian/Ubuntu: "
            "apt-get install bubblewrap), or set BIFROST_LOCAL_SANDBOX=none to run workflows unsandboxed"
        )
    for path in settings.local_sandbox_paths:
        if not path.is_dir():
            raise SandboxError(f"BIFROST_LOCAL_SANDBOX_PATHS names {path}, which is not a folder")
    # Only the control plane and the runner template use these folders as such: a runner sees its own part of
    # the temporary folder, the cache read-only, and no log folder.
    runner_tmp_dir(settings).mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(runner_tmp_dir(settings), 0o700)
    log_folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    _prepare_cache(runner_cache_dir(settings))
    command = sandbox_command(settings, log_folder)
    probe = [*command, sys.executable, "-s", "-m", "bifrost_runner.zygote", "--probe"]
    try:
        tried = subprocess.run(
            [*probe, *template_options(settings, log_folder)],
            capture_output=True,
            timeout=_PROBE_TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SandboxError(f"the local runners' bubblewrap sandbox does not start: {exc}") from exc
    if tried.returncode != 0:
        error = tried.stderr.decode(errors="replace").strip()
        raise SandboxError(
            f"the local runners' bubblewrap sandbox does not start ({error or f'exit code {tried.returncode}'}); "
            "it needs user namespaces (sysctl kernel.unprivileged_userns_clone=1, user.max_user_namespaces > 0) "
            "unless the control plane runs as root. Set BIFROST_LOCAL_SANDBOX=none to run workflows unsandboxed"
        )
    return command


def _prepare_cache(cache: Path) -> None:
    """The runners' workspace cache: the control plane's (and the template's) to write, the runners' to read. One
    made by an earlier version, which runners could write, is emptied."""
    cache.mkdir(parents=True, exist_ok=True)
    if cache.stat().st_uid != os.geteuid():
        raise SandboxError(
            f"the runners' workspace cache {cache} belongs to user {cache.stat().st_uid}, not to the control "
            f"plane's ({os.geteuid()}): runners could change what other runs import. Give it to the control "
            "plane's user"
        )
    os.chmod(cache, 0o755 if runs_as_root() else 0o700)
    layout = cache / CACHE_LAYOUT_FILE
    try:
        mark = os.lstat(layout)
        marked = mark.st_uid == os.geteuid() and layout.read_text() == CACHE_LAYOUT
    except FileNotFoundError:
        marked = False
    if not marked:
        for entry in cache.iterdir():
            remove_tree(entry)
        layout.write_text(CACHE_LAYOUT)


def remove_tree(path: Path) -> None:
    """Remove `path`, a file or a folder with all it holds, whatever permissions a runner gave what it made there.
    For what runners of runs that have ended left."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, onerror=_open_up)
    else:
        path.unlink(missing_ok=True)


def _open_up(function: Callable[..., Any], failed: str, excinfo: _ExcInfo) -> None:
    """`shutil.rmtree`'s error handler: a folder closed to its owner is opened, and its removal tried again."""
    error = excinfo[1]
    if isinstance(error, FileNotFoundError):
        return
    if not isinstance(error, PermissionError):
        raise error
    if function in (os.unlink, os.rmdir):  # the folder that holds it may not be written
        os.chmod(os.path.dirname(failed), 0o700)
        function(failed)
    elif stat.S_ISDIR(os.lstat(failed).st_mode):  # the folder itself may not be read
        os.chmod(failed, 0o700)
        shutil.rmtree(failed, onerror=_open_up)
    else:
        raise error


def process_limit_problem(kernel_release: str) -> str | None:
    """Why a non-root control plane's runners cannot each have their own process limit on this kernel, if they
    cannot: Linux counts a user's processes per user namespace from 5.14 on, before that per user (every runner,
    and the control plane, together)."""
    numbers = [int(part) for part in kernel_release.split("-")[0].split(".")[:2] if part.isdigit()]
    if len(numbers) == 2 and tuple(numbers) >= (5, 14):
        return None
    return (
        f"this Linux ({kernel_release}) counts a user's processes together, not per user namespace (Linux 5.14 "
        "and later do): with a non-root control plane, whose runners share its user, a limit of "
        "BIFROST_LOCAL_MAX_PROCESSES per runner cannot hold. Local runners get no process limit; run the control "
        "plane as root for one"
    )


def child_pids(pid: int) -> list[int]:
    """The children of process `pid` (of any of its threads), as this PID namespace numbers them."""
    children: list[int] = []
    with contextlib.suppress(FileNotFoundError, ProcessLookupError):
        for thread in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                children += [int(child) for child in Path(f"/proc/{pid}/task/{thread}/children").read_text().split()]
    return children


def sandbox_pid(pid: int) -> int | None:
    """The pid that process `pid` has in the sandbox's PID namespace, one level below this one's (a runner's
    keeper is also the first process of a namespace of its own, below that)."""
    with contextlib.suppress(FileNotFoundError, ProcessLookupError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("NSpid:"):
                pids = line.split()[1:]
                return int(pids[1]) if len(pids) > 1 else None
    return None


def host_pid(parent: int, pid_inside: int) -> int | None:
    """The pid, here, of the child of process `parent` that has the pid `pid_inside` in the sandbox."""
    for child in child_pids(parent):
        if sandbox_pid(child) == pid_inside:
            return child
    return None
