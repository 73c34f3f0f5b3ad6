"""A cgroup of its own for each local runner, where the control plane may make them.

Resource limits of a process (`RLIMIT_AS`, `RLIMIT_NPROC`) bound each process alone and count processes per user;
a cgroup bounds the runner with every process it starts, counts its real memory, and lets the backend kill
whatever the runner left behind, double forks included, before its user is handed to the next runner.

Runner cgroups are made under the control plane's own cgroup: in the unified (v2) hierarchy where the `memory` and
`pids` controllers are delegated to it, else in the cgroup v1 `memory` and `pids` hierarchies, which a control
plane running as root may write to. Without either, `find` says why, and runners are limited by resource limits
of their processes alone.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
CONTROLLERS = ("memory", "pids")
UNIFIED = "unified"
"""The key of the one folder of a cgroup v2 runner cgroup (v1 ones have one per controller)."""
CONTROL_PLANE_LEAF = "control-plane"
"""Under a delegated cgroup v2 cgroup that holds processes, the child they move to so that its children may have
controllers (a cgroup v2 cgroup with controllers for its children holds no processes itself)."""
KILL_ROUNDS = 50
"""How often the processes left in a runner's cgroup are killed again while some are still forking."""
KILL_ROUND_SECONDS = 0.02


class CgroupError(RuntimeError):
    """A runner's cgroup could not be made, joined or emptied."""


class ProcessGone(CgroupError):
    """The process to move into a cgroup has ended."""


class CgroupsUnavailable(RuntimeError):
    """Runner cgroups cannot be had on this machine; the message says why."""


def _own_cgroups(proc_cgroup: str) -> dict[str, str]:
    """The control plane's cgroup by controller (v1), and under `UNIFIED` in the v2 hierarchy, from
    `/proc/self/cgroup`."""
    paths: dict[str, str] = {}
    for line in proc_cgroup.splitlines():
        hierarchy, controllers, path = line.split(":", 2)
        if hierarchy == "0" and not controllers:
            paths[UNIFIED] = path
        for controller in controllers.split(","):
            if controller:
                paths[controller] = path
    return paths


def _unified_mount(mountinfo: str) -> tuple[Path, str] | None:
    """Where the cgroup v2 hierarchy is mounted, and which of its cgroups is the mount's root."""
    for line in mountinfo.splitlines():
        fields, _, rest = line.partition(" - ")
        if rest.split(" ", 1)[0] == "cgroup2":
            parts = fields.split()
            return Path(parts[4]), parts[3]
    return None


def _write(path: Path, value: str) -> None:
    try:
        path.write_text(value)
    except OSError as error:
        raise CgroupError(f"could not set {path} to {value}: {error}") from error


def _children(pid: int) -> list[int]:
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return []
    children: list[int] = []
    for task in tasks:
        with contextlib.suppress(FileNotFoundError):
            children += [int(child) for child in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
    return children


@dataclass(frozen=True)
class RunnerCgroup:
    """One runner's cgroup: a folder in each controller's hierarchy (v1), or one folder under `UNIFIED` (v2)."""

    folders: dict[str, Path]

    @property
    def unified(self) -> bool:
        return UNIFIED in self.folders

    def _folder(self, controller: str) -> Path:
        return self.folders[UNIFIED] if self.unified else self.folders[controller]

    def join(self, pid: int) -> None:
        """Move `pid` (and so every process it starts from now on) into this cgroup."""
        for folder in self.folders.values():
            try:
                (folder / "cgroup.procs").write_text(str(pid))
            except ProcessLookupError as error:
                raise ProcessGone(f"process {pid} has ended") from error
            except OSError as error:
                raise CgroupError(f"could not move process {pid} into {folder}: {error}") from error

    def join_tree(self, pid: int) -> None:
        """Move `pid` and every process it started into this cgroup. Each is moved before its children are
        listed, so a child started meanwhile is born inside; the tree is walked again until no pass finds one
        more (an orphan handed to `pid` as its reaper, say)."""
        self.join(pid)
        moved = {pid}
        while True:
            found = False
            waiting = _children(pid)
            while waiting:
                child = waiting.pop()
                if child not in moved:
                    with contextlib.suppress(CgroupError):  # gone meanwhile
                        self.join(child)
                    moved.add(child)
                    found = True
                waiting += _children(child)
            if not found:
                return

    def set_limits(self, memory_limit_bytes: int, max_processes: int | None) -> None:
        """Limit the cgroup's memory (swap included, lest a runner over its limit be swapped out rather than
        stopped) and its processes and threads (None: no limit)."""
        processes = "max" if max_processes is None else str(max_processes)
        if self.unified:
            folder = self.folders[UNIFIED]
            _write(folder / "memory.max", str(memory_limit_bytes))
            if (folder / "memory.swap.max").exists():
                _write(folder / "memory.swap.max", "0")
            # The OOM killer ends the runner with every process of it, not a worker of it alone.
            _write(folder / "memory.oom.group", "1")
            _write(folder / "pids.max", processes)
            return
        memory = self.folders["memory"]
        limit, memsw = memory / "memory.limit_in_bytes", memory / "memory.memsw.limit_in_bytes"
        # The memory limit never exceeds the one with swap: raised, that one first; lowered, it last.
        ordered = [limit, memsw] if memory_limit_bytes < int(limit.read_text()) else [memsw, limit]
        for path in ordered:
            if path.exists():
                _write(path, str(memory_limit_bytes))
        _write(self.folders["pids"] / "pids.max", processes)

    def memory_limit_reached(self) -> bool:
        """Whether the kernel killed a process of this runner for its memory limit."""
        name = "memory.events" if self.unified else "memory.oom_control"
        try:
            text = (self._folder("memory") / name).read_text()
        except OSError:
            return False
        counters = dict(line.split() for line in text.splitlines() if line.strip())
        return int(counters.get("oom_kill", "0")) > 0

    def kill_all(self) -> bool:
        """SIGKILL every process in the cgroup until none is left; False if some still live afterwards."""
        procs = self._folder("pids") / "cgroup.procs"
        kill_file = self._folder("pids") / "cgroup.kill"
        if self.unified and kill_file.exists():
            with contextlib.suppress(FileNotFoundError):
                kill_file.write_text("1")
        for _ in range(KILL_ROUNDS):
            try:
                pids = [int(pid) for pid in procs.read_text().split()]
            except FileNotFoundError:
                return True
            if not pids:
                return True
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(KILL_ROUND_SECONDS)
        return False

    def remove(self) -> None:
        """Kill what is left in the cgroup, then remove it."""
        if not self.kill_all():
            raise CgroupError(f"processes of {self._folder('pids')} outlived {KILL_ROUNDS} rounds of SIGKILL")
        for folder in self.folders.values():
            _remove_folder(folder)

    def rename(self, name: str) -> RunnerCgroup:
        """This cgroup, under the name `name`."""
        renamed = {key: folder.with_name(name) for key, folder in self.folders.items()}
        for key, folder in self.folders.items():
            try:
                folder.rename(renamed[key])
            except OSError as error:
                raise CgroupError(f"could not rename {folder} to {name}: {error}") from error
        return RunnerCgroup(renamed)


def _remove_folder(folder: Path) -> None:
    # An emptied cgroup may still be busy for a moment while the kernel reaps its last process.
    for _ in range(KILL_ROUNDS):
        try:
            folder.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError as error:
            if error.errno != errno.EBUSY:
                raise CgroupError(f"could not remove {folder}: {error}") from error
            time.sleep(KILL_ROUND_SECONDS)
    raise CgroupError(f"{folder} stayed busy")


@dataclass(frozen=True)
class RunnerCgroups:
    """Where this control plane makes its runners' cgroups: a parent folder in each controller's hierarchy (v1),
    or one in the unified hierarchy (v2)."""

    parents: dict[str, Path]

    @property
    def kind(self) -> str:
        return "cgroup v2" if UNIFIED in self.parents else "cgroup v1"

    @classmethod
    def find(cls, name: str, versions: Sequence[int] = (2, 1), root: Path = CGROUP_ROOT) -> RunnerCgroups:
        """The parent folders named `name` under the control plane's own cgroups, made if missing: in the first
        of the cgroup `versions` it may have them in. Raises `CgroupsUnavailable` saying why none will do."""
        own = _own_cgroups(Path("/proc/self/cgroup").read_text())
        reasons = []
        for version in versions:
            try:
                if version == 2:
                    return cls._unified(name, own, Path("/proc/self/mountinfo").read_text())
                return cls._v1(name, own, root)
            except CgroupsUnavailable as unavailable:
                reasons.append(str(unavailable))
        raise CgroupsUnavailable("; ".join(reasons))

    @classmethod
    def _unified(cls, name: str, own: dict[str, str], mountinfo: str) -> RunnerCgroups:
        mount = _unified_mount(mountinfo)
        if mount is None or UNIFIED not in own:
            raise CgroupsUnavailable("cgroup v2: no unified hierarchy is mounted")
        mount_point, mount_root = mount
        path = own[UNIFIED]
        if mount_root != "/" and path.startswith(mount_root):
            path = path[len(mount_root) :]
        base = mount_point / path.lstrip("/")
        if base.name == CONTROL_PLANE_LEAF:  # moved there by an earlier start of this process
            base = base.parent
        controllers = (base / "cgroup.controllers").read_text().split() if base.is_dir() else []
        missing = [controller for controller in CONTROLLERS if controller not in controllers]
        if missing:
            raise CgroupsUnavailable(
                f"cgroup v2: the control plane's cgroup {base} has no {' and '.join(missing)} "
                f"controller{'s' if len(missing) > 1 else ''}"
            )
        try:
            cls._enable_for_children(base)
            parent = base / name
            parent.mkdir(exist_ok=True)
            cls._enable_for_children(parent)
        except (OSError, CgroupError) as error:
            raise CgroupsUnavailable(f"cgroup v2: {error}") from error
        if not os.access(base / "cgroup.procs", os.W_OK):
            raise CgroupsUnavailable(f"cgroup v2: the control plane may not move processes out of {base}")
        return cls({UNIFIED: parent})

    @staticmethod
    def _enable_for_children(folder: Path) -> None:
        """Give the children of `folder` the memory and pids controllers. A cgroup that holds processes cannot:
        outside the hierarchy's root, its processes move to a child `CONTROL_PLANE_LEAF` first."""
        subtree = folder / "cgroup.subtree_control"
        wanted = " ".join(f"+{controller}" for controller in CONTROLLERS)
        if set(CONTROLLERS) <= set(subtree.read_text().split()):
            return
        try:
            subtree.write_text(wanted)
            return
        except OSError as error:
            if error.errno != errno.EBUSY:
                raise CgroupError(f"could not enable {wanted} in {subtree}: {error}") from error
        leaf = folder / CONTROL_PLANE_LEAF
        leaf.mkdir(exist_ok=True)
        for pid in (folder / "cgroup.procs").read_text().split():
            with contextlib.suppress(ProcessLookupError):
                (leaf / "cgroup.procs").write_text(pid)
        _write(subtree, wanted)

    @classmethod
    def _v1(cls, name: str, own: dict[str, str], root: Path) -> RunnerCgroups:
        parents: dict[str, Path] = {}
        try:
            for controller in CONTROLLERS:
                hierarchy = root / controller
                if controller not in own or not (hierarchy / "cgroup.procs").is_file():
                    raise CgroupsUnavailable(f"cgroup v1: no {controller} hierarchy is mounted at {hierarchy}")
                parent = hierarchy / own[controller].lstrip("/") / name
                try:
                    parent.mkdir(exist_ok=True)
                except OSError as error:
                    raise CgroupsUnavailable(f"cgroup v1: could not make {parent}: {error}") from error
                parents[controller] = parent
                if not os.access(parent / "cgroup.procs", os.W_OK):
                    raise CgroupsUnavailable(f"cgroup v1: the control plane may not move processes into {parent}")
        except CgroupsUnavailable:
            cls(parents).remove_if_unused()  # those of the other controllers, made already
            raise
        return cls(parents)

    def make(self, runner: str, memory_limit_bytes: int, max_processes: int | None) -> RunnerCgroup:
        """A cgroup for `runner` with its limits set, replacing one left by an earlier runner of that name."""
        cgroup = self.get(runner)
        with contextlib.suppress(CgroupError):
            cgroup.remove()
        for folder in cgroup.folders.values():
            try:
                folder.mkdir()
            except OSError as error:
                raise CgroupError(f"could not make {folder}: {error}") from error
        cgroup.set_limits(memory_limit_bytes, max_processes)
        return cgroup

    def get(self, runner: str) -> RunnerCgroup:
        """The cgroup of `runner`, made or not."""
        return RunnerCgroup({key: parent / runner for key, parent in self.parents.items()})

    def remove_if_unused(self) -> None:
        """Remove the runner cgroups no process is left in, then the parent folders if that emptied them: the
        cgroups of runners that outlive the control plane stay."""
        for parent in self.parents.values():
            for folder in [*parent.iterdir(), parent]:
                with contextlib.suppress(OSError):  # not a folder, gone, or a process is still in it
                    folder.rmdir()

    def leftovers(self) -> list[str]:
        """Names of runner cgroups present, made by this or an earlier control plane of the same name."""
        names = {folder.name for parent in self.parents.values() for folder in parent.iterdir() if folder.is_dir()}
        return sorted(names)
