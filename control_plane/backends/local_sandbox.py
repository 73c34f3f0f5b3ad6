"""The sandbox of local runners: the runner template, and so every runner it forks, runs inside bubblewrap
(`bwrap`) namespaces.

- Its own PID namespace: the control plane's processes (and those of anything else on the machine) are not
  there to be seen in /proc or signalled. The template's first process stays as the namespace's init, so that
  runners outlive a template that dies and a control plane that restarts.
- Its own mount namespace, holding only what runners need: the system's programs and libraries (/usr, /etc, …,
  read-only), the Python installation and the runner's code (read-only), the workspace folder (read-only), the
  runners' log folder, a temporary folder of their own (`{data_dir}/runner-tmp`, seen as /tmp) and the folders
  of `local_sandbox_paths`. The rest of the data folder (keys, database, NATS store) is not there.
- No capabilities. Under a root control plane the template keeps only those it needs to give each runner a user
  of its own (`RUNNER_UID_BASE` on) when the runner takes its claim, and to let spares wait at low priority; a
  non-root control plane's runners run as its user, each in a user namespace of its own. Either way a runner
  cannot read another's /proc/<pid>/environ or memory: it is not dumpable (see `bifrost_runner.zygote`).

Runners see the network as the control plane does: they reach NATS and the API like any client.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

from control_plane.settings import Settings

log = logging.getLogger(__name__)

RUNNER_UID_BASE = 200_000
"""Under a root control plane, runners get users (and groups) of their own from this id on (see
`bifrost_runner.zygote.RUNNER_UIDS` for how many)."""
SANDBOX_TMP = "/tmp"
_SYSTEM_FOLDERS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/etc")
_PROBE_TIMEOUT_SECONDS = 30


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
    return settings.data_dir.resolve() / "runner-tmp"


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
    if runs_as_root():
        # To switch runners to their users, and to wait at low CPU priority until the claim (`zygote`).
        command += ["--cap-drop", "ALL"]
        command += [arg for cap in ("CAP_SETUID", "CAP_SETGID", "CAP_SYS_NICE") for arg in ("--cap-add", cap)]
    else:
        command += ["--unshare-user", "--cap-drop", "ALL"]
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
    writable = [log_folder.resolve()]
    if settings.runner_workspace_cache_dir is not None:
        writable.append(Path(settings.runner_workspace_cache_dir).resolve())
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
    shared = [runner_tmp_dir(settings)]
    if settings.runner_workspace_cache_dir is not None:
        shared.append(Path(settings.runner_workspace_cache_dir))
    for folder in shared:
        folder.mkdir(parents=True, exist_ok=True)
        # Under root, runners have users of their own: each may make its files there (and keeps them to itself).
        os.chmod(folder, 0o1777 if runs_as_root() else 0o700)
    log_folder.mkdir(parents=True, exist_ok=True)
    for path in settings.local_sandbox_paths:
        if not path.is_dir():
            raise SandboxError(f"BIFROST_LOCAL_SANDBOX_PATHS names {path}, which is not a folder")
    command = sandbox_command(settings, log_folder)
    try:
        probe = subprocess.run(
            [*command, sys.executable, "-c", "pass"],
            capture_output=True,
            timeout=_PROBE_TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SandboxError(f"the local runners' bubblewrap sandbox does not start: {exc}") from exc
    if probe.returncode != 0:
        error = probe.stderr.decode(errors="replace").strip()
        raise SandboxError(
            f"the local runners' bubblewrap sandbox does not start ({error or f'exit code {probe.returncode}'}); "
            "it needs user namespaces (sysctl kernel.unprivileged_userns_clone=1, user.max_user_namespaces > 0) "
            "unless the control plane runs as root. Set BIFROST_LOCAL_SANDBOX=none to run workflows unsandboxed"
        )
    return command


def child_pids(pid: int) -> list[int]:
    """The children of process `pid` (of any of its threads), as this PID namespace numbers them."""
    children: list[int] = []
    with contextlib.suppress(FileNotFoundError, ProcessLookupError):
        for thread in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                children += [int(child) for child in Path(f"/proc/{pid}/task/{thread}/children").read_text().split()]
    return children


def inner_pid(pid: int) -> int | None:
    """The pid that process `pid` has in its own (innermost) PID namespace."""
    with contextlib.suppress(FileNotFoundError, ProcessLookupError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("NSpid:"):
                return int(line.split()[-1])
    return None


def host_pid(parent: int, pid_inside: int) -> int | None:
    """The pid, here, of the child of process `parent` that has the pid `pid_inside` in the sandbox."""
    for child in child_pids(parent):
        if inner_pid(child) == pid_inside:
            return child
    return None
