"""Namespaces of a runner's own, inside the local runners' sandbox: what one run leaves behind never reaches
another, whoever runs it.

The runner template (`zygote`) forks each runner's keeper as the first process of a new PID namespace. The keeper
gives the namespace a mount namespace and an IPC namespace of its own, in which

- /tmp and /dev/shm are folders of this run alone (`{runner tmp}/<run>/tmp` and `.../shm`), removed by the
  control plane once the run has ended;
- /proc shows this run's processes only;
- the runners' workspace cache is read-only, and the runners' log folder is hidden.

It then forks the runner, which takes its claim, and waits, tracing it for the stop it makes as it exits (see
`ExitWatch`). When the runner ends, the keeper relays how it ended and exits; as the namespace's first process,
it takes every process still in it along (the kernel kills them and waits for them), so nothing a workflow
started outlives its run.

The runner keeps two descriptors from the keeper until its workflow starts: the cache folder (written through
`/proc/self/fd/N`: the runner syncs its workspace revision there) and the log folder (where it names its log
file). `Confinement.seal` closes them and drops what the runner may no longer have: its privileges (under a root
control plane, its user then becomes a user of its own) and its descriptors.
"""

from __future__ import annotations

import ctypes
import os
import re
import resource
import signal
from dataclasses import dataclass
from pathlib import Path

CLONE_NEWNS = 0x00020000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWUSER = 0x10000000

_MS_RDONLY = 0x1
_MS_NOSUID = 0x2
_MS_NODEV = 0x4
_MS_NOEXEC = 0x8
_MS_REMOUNT = 0x20
_MS_NOATIME = 0x400
_MS_NODIRATIME = 0x800
_MS_BIND = 0x1000
_MS_REC = 0x4000
_MS_PRIVATE = 0x40000
_MS_RELATIME = 0x200000
# statvfs flags of a mount, and the mount flags they stand for: a remount keeps them (a user namespace may not
# drop those locked on its mounts).
_KEPT_MOUNT_FLAGS = {
    os.ST_NOSUID: _MS_NOSUID,
    os.ST_NODEV: _MS_NODEV,
    os.ST_NOEXEC: _MS_NOEXEC,
    os.ST_NOATIME: _MS_NOATIME,
    os.ST_NODIRATIME: _MS_NODIRATIME,
    os.ST_RELATIME: _MS_RELATIME,
}
_PROC_COVERED = ("sys", "sysrq-trigger", "irq", "bus")
"""What the sandbox's /proc keeps read-only (as bubblewrap does), kept so in a runner's own /proc."""

CAP_SYS_ADMIN = 21
_PR_SET_DUMPABLE = 4
_CAPABILITY_VERSION_3 = 0x20080522


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.ptrace.restype = ctypes.c_long
_libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]

_PTRACE_CONT = 7
_PTRACE_SEIZE = 0x4206
_PTRACE_LISTEN = 0x4208
_PTRACE_O_TRACEEXIT = 0x40
_PTRACE_EVENT_EXIT = 6
_PTRACE_EVENT_STOP = 128
_STOP_SIGNALS = frozenset({signal.SIGSTOP, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU})
MEMORY_MARGIN_BYTES = 64 * 1024 * 1024
"""A runner that ends with its largest address space within this (or a tenth of its limit, if more) of its memory
limit is taken to have ended by reaching it: the allocation that failed needed less than what was left."""


def _libc_call(name: str, *args: object) -> None:
    if getattr(_libc, name)(*args) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{name} failed: {os.strerror(errno)}")


def _unshare(flags: int) -> None:
    _libc_call("unshare", flags)


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    try:
        _libc_call(
            "mount",
            None if source is None else os.fsencode(source),
            os.fsencode(target),
            None if fstype is None else fstype.encode(),
            ctypes.c_ulong(flags),
            None if data is None else data.encode(),
        )
    except OSError as exc:
        raise OSError(exc.errno, f"cannot mount {source or fstype} on {target}: {exc.strerror}") from None


def _bind_read_only(path: str) -> None:
    _mount(path, path, None, _MS_BIND | _MS_REC)
    kept = os.statvfs(path).f_flag
    flags = sum(flag for stat_flag, flag in _KEPT_MOUNT_FLAGS.items() if kept & stat_flag)
    _mount(None, path, None, _MS_BIND | _MS_REMOUNT | _MS_RDONLY | _MS_NOSUID | _MS_NODEV | flags)


def drop_capabilities(keep: frozenset[int] = frozenset()) -> None:
    """Keep only the capabilities `keep` of those this thread has (effective, permitted; none inheritable). Done
    while the process has one thread: threads started later inherit it."""
    header = _CapHeader(_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    _libc_call("capget", ctypes.byref(header), data)
    for index, part in enumerate(data):
        mask = sum(1 << (cap - 32 * index) for cap in keep if 32 * index <= cap < 32 * (index + 1))
        part.effective &= mask
        part.permitted &= mask
        part.inheritable = 0
    _libc_call("capset", ctypes.byref(header), data)


def held_capabilities() -> frozenset[int]:
    header = _CapHeader(_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    _libc_call("capget", ctypes.byref(header), data)
    return frozenset(
        32 * index + bit for index, part in enumerate(data) for bit in range(32) if part.permitted >> bit & 1
    )


@dataclass(frozen=True)
class RunnerFolders:
    """The sandbox's folders that confined runners get their own part of, as the template sees them."""

    tmp: str
    """Where each run gets its /tmp and /dev/shm, as `<run>/tmp` and `<run>/shm`."""
    workspace_cache: str
    """The runners' workspace cache: read-only to the workflows, written by runners before theirs starts."""
    logs: str
    """The runners' log folder: hidden from workflows; each runner names its own log file there."""

    def run_folder(self, run: str) -> str:
        return os.path.join(self.tmp, run)

    def make_run_folder(self, run: str) -> None:
        """The folder of a run to be, with its /tmp and /dev/shm, each open to every user as such folders are."""
        folder = self.run_folder(run)
        os.mkdir(folder, 0o700)
        for name in ("tmp", "shm"):
            os.mkdir(os.path.join(folder, name))
            os.chmod(os.path.join(folder, name), 0o1777)


class PidNamespaces:
    """For the template: each fork made between `prepare` and `restore` is the first process of a PID namespace
    of its own."""

    def __init__(self) -> None:
        self._own = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)

    def prepare(self) -> None:
        _unshare(CLONE_NEWPID)

    def restore(self) -> None:
        _libc_call("setns", self._own, CLONE_NEWPID)


@dataclass
class Confinement:
    """What a confined runner holds from its keeper until its workflow starts."""

    cache_fd: int
    logs_fd: int
    uid: int | None = None
    """The user the runner becomes as its workflow starts; None: it stays the one it is."""
    max_processes: int | None = None

    @property
    def fds(self) -> set[int]:
        return {self.cache_fd, self.logs_fd}

    @property
    def writable_cache(self) -> Path:
        """The workspace cache, writable (its usual path is read-only)."""
        return Path(f"/proc/self/fd/{self.cache_fd}")

    @property
    def log_folder(self) -> str:
        """The runners' log folder, through its descriptor (its usual path is hidden)."""
        return f"/proc/self/fd/{self.logs_fd}"

    def log_path(self, log_path: str) -> str:
        """`log_path`, a file of the runners' log folder, through the descriptor of that folder."""
        return f"{self.log_folder}/{os.path.basename(log_path)}"

    def seal(self) -> None:
        """Once the workspace is checked out, just before the workflow is imported: give up the descriptors and
        privileges a workflow may not have. Raises if any of it fails: the workflow must then not run."""
        os.close(self.cache_fd)
        os.close(self.logs_fd)
        if self.uid is not None:
            become(self.uid)
        set_not_dumpable()
        os.umask(0o077)
        if self.max_processes is not None:
            limit(resource.RLIMIT_NPROC, self.max_processes, self.max_processes)


def mounted_inside_tmp() -> tuple[str, ...]:
    """The mount points of the sandbox's mounts inside its /tmp (the workspace or the data folder may be there),
    each with the mounts on it: found once by the template, as the sandbox's mounts do not change, and carried
    into each run's /tmp by its keeper (see `keep_to_this_run`)."""
    return tuple(_mounts_inside("/tmp"))


def keep_to_this_run(folders: RunnerFolders, run_fd: int, carried_mounts: tuple[str, ...]) -> Confinement:
    """In a runner's keeper, the first process of its PID namespace: enter mount and IPC namespaces of its own
    and arrange them (see the module's documentation), with the run's folder open as `run_fd` (the template
    renames it as the claim comes) and the sandbox's mounts inside /tmp (`mounted_inside_tmp`) in the run's /tmp
    too. The descriptors returned are the runner's until it seals itself."""
    _unshare(CLONE_NEWNS | CLONE_NEWIPC)
    # Nothing mounted here may reach the sandbox's other namespaces.
    _mount(None, "/", None, _MS_REC | _MS_PRIVATE)
    cache_fd = os.open(folders.workspace_cache, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    logs_fd = os.open(folders.logs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    carried = [(path, os.open(path, os.O_PATH | os.O_CLOEXEC)) for path in carried_mounts]
    _bind_from_run_folder(run_fd, "shm", "/dev/shm")
    _bind_from_run_folder(run_fd, "tmp", "/tmp")
    os.chdir("/tmp")  # the working folder was the sandbox's /tmp, which holds every run's folder
    for path, fd in carried:
        _make_mount_point(path, is_folder=os.path.isdir(f"/proc/self/fd/{fd}"))
        _mount(f"/proc/self/fd/{fd}", path, None, _MS_BIND | _MS_REC)
        os.close(fd)
    _bind_read_only(folders.workspace_cache)
    _mount("tmpfs", folders.logs, "tmpfs", _MS_RDONLY | _MS_NOSUID | _MS_NODEV | _MS_NOEXEC, "size=4k,mode=000")
    if os.path.isdir("/dev/pts"):
        _mount("devpts", "/dev/pts", "devpts", _MS_NOSUID | _MS_NOEXEC, "newinstance,ptmxmode=0666,mode=620")
    _mount("proc", "/proc", "proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC)
    for name in _PROC_COVERED:
        if os.path.exists(f"/proc/{name}"):
            _bind_read_only(f"/proc/{name}")
    return Confinement(cache_fd, logs_fd)


def _bind_from_run_folder(run_fd: int, name: str, target: str) -> None:
    """Bind `name` of the run's folder on `target`. The folder is found by its path, the descriptor's being of
    the mount namespace it was opened in; the template renames it at most once, which a second try outlives."""
    for attempt in range(2):
        try:
            source = os.path.join(os.readlink(f"/proc/self/fd/{run_fd}"), name)
            _mount(source, target, None, _MS_BIND | _MS_NOSUID | _MS_NODEV)
            return
        except FileNotFoundError:
            if attempt:
                raise


def _mounts_inside(folder: str) -> list[str]:
    """The mount points of the mounts on top of the one at `folder`, each with the mounts on it."""
    mounts = [line.split() for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    points = {fields[0]: _unescape(fields[4]) for fields in mounts}
    # The topmost mount at `folder`: the last one listed there.
    top = [fields[0] for fields in mounts if points[fields[0]] == folder][-1]
    return [points[fields[0]] for fields in mounts if fields[1] == top and points[fields[0]] != folder]


def _unescape(path: str) -> str:
    """A mount point as /proc/self/mountinfo writes it, with space, tab, newline and backslash in octal."""
    return re.sub(r"\\([0-7]{3})", lambda match: chr(int(match.group(1), 8)), path)


def _make_mount_point(path: str, *, is_folder: bool) -> None:
    os.makedirs(path if is_folder else os.path.dirname(path), mode=0o755, exist_ok=True)
    if not is_folder and not os.path.exists(path):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o644))


def set_not_dumpable() -> None:
    """Keep other processes of the same user out of this one's /proc/<pid>/environ, memory and ptrace."""
    _libc_call("prctl", _PR_SET_DUMPABLE, 0, 0, 0, 0)


def set_dumpable() -> None:
    _libc_call("prctl", _PR_SET_DUMPABLE, 1, 0, 0, 0)


def become(uid: int) -> None:
    """Run as user and group `uid` from now on, with no other groups (and, being root no more, no capabilities).
    glibc makes every thread of the process change."""
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)


def limit(kind: int, soft: int, hard: int) -> None:
    """Lower a resource limit; never above a hard limit the process already runs under."""
    _, current_hard = resource.getrlimit(kind)
    if current_hard != resource.RLIM_INFINITY:
        hard = min(hard, current_hard)
    resource.setrlimit(kind, (min(soft, hard), hard))


def _id_one_level_up(kind: str) -> int:
    """The uid or gid (`kind`) this process has in the parent of its user namespace."""
    own = os.getuid() if kind == "uid" else os.getgid()
    with open(f"/proc/self/{kind}_map") as mapping:
        for line in mapping:
            inside, outside, count = (int(field) for field in line.split())
            if inside <= own < inside + count:
                return outside + own - inside
    raise OSError(f"this process's {kind} {own} is not in its user namespace's {kind} map")


def own_user_namespace() -> None:
    """Move this (single-threaded) process into a user namespace of its own, as the user and group it has one
    level up (so that it sees itself as the control plane's user): the kernel counts a user's processes for
    RLIMIT_NPROC per user namespace, so the runner's process limit counts its own processes and threads, not
    those of every runner of that user."""
    uid, gid = _id_one_level_up("uid"), _id_one_level_up("gid")
    parent_uid, parent_gid = os.getuid(), os.getgid()
    # The maps below are written through /proc/self, which belongs to root while the process is not dumpable (as
    # forks of the template are); marked so again by the caller once written.
    set_dumpable()
    _unshare(CLONE_NEWUSER)
    for name, mapping in (
        ("setgroups", "deny"),
        ("uid_map", f"{uid} {parent_uid} 1"),
        ("gid_map", f"{gid} {parent_gid} 1"),
    ):
        with open(f"/proc/self/{name}", "w") as map_file:
            map_file.write(mapping)


class ExitWatch:
    """A keeper's watch over its runner, traced (`PTRACE_SEIZE`) for the one stop the kernel makes as the runner
    exits, while its memory is still there to be measured: whether it ended at its memory limit (a crash in C code
    that found no memory, say) is known then, and only then. Every other stop is the delivery of a signal to the
    runner, which the watch passes on; a runner stopped by a signal stays stopped until it is continued."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.at_memory_limit = False

    def start(self) -> None:
        """Trace the runner (a child, dumpable until this is done). Where tracing is not allowed, the runner runs
        untraced, and its end is not measured."""
        _libc.ptrace(_PTRACE_SEIZE, self.pid, None, _PTRACE_O_TRACEEXIT)

    def stopped(self, status: int) -> None:
        """Go on after the runner's stop `status` (of `waitpid`)."""
        event, signum = status >> 16, os.WSTOPSIG(status)
        if event == _PTRACE_EVENT_EXIT:
            self.at_memory_limit = at_memory_limit(self.pid)
            _libc.ptrace(_PTRACE_CONT, self.pid, None, None)
        elif event == _PTRACE_EVENT_STOP:
            _libc.ptrace(_PTRACE_LISTEN if signum in _STOP_SIGNALS else _PTRACE_CONT, self.pid, None, None)
        else:
            _libc.ptrace(_PTRACE_CONT, self.pid, None, signum)


def at_memory_limit(pid: int) -> bool:
    """Whether the largest address space process `pid` had comes within the margin of its memory limit
    (RLIMIT_AS)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        limits = Path(f"/proc/{pid}/limits").read_text()
    except OSError:
        return False
    peak = next((int(line.split()[1]) * 1024 for line in status.splitlines() if line.startswith("VmPeak:")), None)
    soft = next((line.split()[3] for line in limits.splitlines() if line.startswith("Max address space")), None)
    if peak is None or soft is None or not soft.isdigit():
        return False
    ceiling = int(soft)
    return peak + max(MEMORY_MARGIN_BYTES, ceiling // 10) >= ceiling
