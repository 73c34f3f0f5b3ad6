"""`python -m bifrost_runner.zygote`: the local backend's runner template.

It imports everything a runner needs once (never any workspace code), then forks one single-use runner per
claim. A few forks wait ready ("spares"), so starting a run costs a pipe write, not an interpreter start. A spare
waits with its client for the control plane's API at the URL of the last claim, having rehearsed an execution
once (see `bifrost_runner.run.rehearse`); a claim sent elsewhere makes a client anew. It connects to NATS once
its claim came: the claim brings the execution's own NATS identity. A used spare is replaced once its runner
ends, or shortly after, so that a new fork does not compete with the run for a core; where the runner can take
its priority back (see `priority_is_restorable`), a spare gets ready at the lowest CPU priority, so that it never
competes with running work, and runs its claim at the template's priority. The template reads `RunnerClaim`s,
one JSON line each, on stdin; writes `TemplateStarted`, then `ForkMade` / `RunnerForked` / `RunnerEnded` /
`RunnerForkFailed` lines on stdout; reaps its runners; and exits when stdin closes, leaving running runners to
finish. Started as the first process of a PID namespace (the local runners' sandbox), it stays as that
namespace's init while the template runs in a child.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import gc
import logging
import os
import resource
import selectors
import signal
import sys
import tempfile
import time
import traceback
from collections import deque
from dataclasses import dataclass

import uvloop
from pydantic import BaseModel, ValidationError

from bifrost._internal.prepared_files import PreparedFile
from bifrost._internal.protocol import (
    ForkMade,
    RunnerClaim,
    RunnerEnded,
    RunnerForked,
    RunnerForkFailed,
    TemplateStarted,
)
from bifrost_runner.api import ApiClient
from bifrost_runner.logs import WORKFLOW_LOG_LEVEL
from bifrost_runner.process import configure_runner_logging, exit_now, run_from_env
from bifrost_runner.run import Preconnected, preconnect, rehearse

REFILL_DELAY_SECONDS = 0.1
"""The longest a used spare is not replaced while another one is ready."""
RUNNER_UIDS = 10_000
"""With `--runner-uid-base`, how many users runners get: at most this many run at once."""
_PR_SET_DUMPABLE = 4
_CLONE_NEWUSER = 0x10000000


@dataclass
class _Fork:
    pid: int
    pidfd: int
    claim_fd: int | None
    """Write end of the claim pipe while the fork waits for its claim."""
    uid: int | None
    """The user the runner becomes when it takes its claim; None: the template's."""
    execution_id: str | None = None


def _send(message: BaseModel) -> None:
    os.write(sys.stdout.fileno(), message.model_dump_json().encode() + b"\n")


def _close_inherited_fds(keep: int) -> None:
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2 and fd != keep:
            with contextlib.suppress(OSError):  # the fd of the listing itself, already gone
                os.close(fd)


def _limit(kind: int, soft: int, hard: int) -> None:
    """Lower a resource limit; never above a hard limit the template itself runs under."""
    _, current_hard = resource.getrlimit(kind)
    if current_hard != resource.RLIM_INFINITY:
        hard = min(hard, current_hard)
    resource.setrlimit(kind, (min(soft, hard), hard))


def _open_log(claim: RunnerClaim, prepared: PreparedFile | None) -> int:
    """The runner's log file: the one prepared while waiting, named now, else a new one."""
    if prepared is not None:
        try:
            return prepared.name(claim.log_path)
        except OSError:  # taken, or in another folder than the last claim's
            prepared.discard()
    return os.open(claim.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)


def _libc_call(name: str, *args: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if getattr(libc, name)(*args) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{name}{args} failed: {os.strerror(errno)}")


def _not_dumpable() -> None:
    """Keep other processes of the same user (other runners) out of this one's /proc/<pid>/environ, memory and
    ptrace; it holds the execution's token."""
    _libc_call("prctl", _PR_SET_DUMPABLE, 0, 0, 0, 0)


def _own_user_namespace() -> None:
    """Move this (single-threaded) process into a user namespace of its own, as the same user and group: the
    kernel counts a user's processes for RLIMIT_NPROC per user namespace, so the runner's process limit counts
    its own processes and threads, not those of every runner of that user."""
    uid, gid = os.getuid(), os.getgid()
    # The maps below are written through /proc/self, which belongs to root while the process is not dumpable (as
    # forks of the template are); marked so again by the caller once written.
    _libc_call("prctl", _PR_SET_DUMPABLE, 1, 0, 0, 0)
    _libc_call("unshare", _CLONE_NEWUSER)
    for name, mapping in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
        with open(f"/proc/self/{name}", "w") as map_file:
            map_file.write(mapping)


def _become(uid: int) -> None:
    """Run as user and group `uid` from now on, with no other groups (and, being root no more, no capabilities)."""
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)


def _apply_claim(claim: RunnerClaim, prepared_log: PreparedFile | None, uid: int | None) -> None:
    log_fd = _open_log(claim, prepared_log)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(log_fd)
    env = dict(claim.env)
    if uid is not None:
        _become(uid)
        # A cache folder set for every runner (none of whom may write another's files): one per user in it.
        if cache_dir := env.get("BIFROST_WORKSPACE_CACHE_DIR"):
            env["BIFROST_WORKSPACE_CACHE_DIR"] = os.path.join(cache_dir, str(uid))
    _not_dumpable()
    os.umask(0o077)
    if claim.memory_limit_bytes is not None:
        _limit(resource.RLIMIT_AS, claim.memory_limit_bytes, claim.memory_limit_bytes)
    if claim.cpu_limit_seconds is not None:
        # SIGXCPU at the soft limit, SIGKILL at the hard one.
        _limit(resource.RLIMIT_CPU, claim.cpu_limit_seconds, claim.cpu_limit_seconds + 5)
    if claim.max_processes is not None:
        # Counted per user: with a user of its own (`uid`), the runner's processes and threads alone.
        _limit(resource.RLIMIT_NPROC, claim.max_processes, claim.max_processes)
    os.environ.clear()
    os.environ.update(env)


@dataclass(frozen=True)
class Expected:
    """What the last claim looked like, for the next runners to get ready for."""

    api_url: str | None = None
    """Where the last claim's runner called the API: the next runners make their client for it ahead."""
    log_folder: str | None = None
    """Where the last claim's runner logged: the next runners make their log file there ahead."""

    def after(self, claim: RunnerClaim) -> Expected:
        """What to expect after `claim`: what it says, and what was expected before where it says nothing."""
        return Expected(
            claim.env.get("BIFROST_API_URL") or self.api_url, os.path.dirname(claim.log_path) or self.log_folder
        )


async def _read_claim(claim_fd: int) -> bytes:
    reader = asyncio.StreamReader()
    transport, _ = await asyncio.get_running_loop().connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(claim_fd, "rb", buffering=0)
    )
    try:
        return await reader.read()
    finally:
        transport.close()


async def _get_ready(api_url: str) -> Preconnected:
    preconnected = preconnect(api_url)
    # A failed rehearsal costs the execution only its head start; the runner must serve its claim regardless.
    with contextlib.suppress(Exception):
        await rehearse(preconnected)
    return preconnected


async def _serve_claim(claim_fd: int, expected: Expected, waiting_priority: int | None, uid: int | None) -> int:
    """Make the API client and the log file where the execution is expected to use them and rehearse while
    waiting for the claim, then run it."""
    priority = os.getpriority(os.PRIO_PROCESS, 0)
    if waiting_priority is not None:
        os.setpriority(os.PRIO_PROCESS, 0, waiting_priority)
    prepared_log = PreparedFile.make(expected.log_folder, os.O_WRONLY | os.O_APPEND) if expected.log_folder else None
    connecting = asyncio.ensure_future(_get_ready(expected.api_url)) if expected.api_url else None
    data = await _read_claim(claim_fd)
    if waiting_priority is not None:
        # The template restored it before handing the claim over; a thread started meanwhile is seen to here.
        restore_priority(os.getpid(), priority)
    preconnected = await connecting if connecting else None
    if not data:  # the template went away (or shrank its pool) before a claim came
        if preconnected is not None:
            await preconnected.close()
        return 0
    claim = RunnerClaim.model_validate_json(data)
    _apply_claim(claim, prepared_log, uid)
    return await run_from_env(preconnected, claim.payload)


def _runner_process(
    claim_fd: int, expected: Expected, waiting_priority: int | None, uid: int | None, own_user_namespace: bool
) -> int:
    """In the fork: detach from the template, wait for the claim, run the one execution."""
    os.setsid()
    if own_user_namespace:
        _own_user_namespace()
        _not_dumpable()
    for signum in (signal.SIGTERM, signal.SIGCHLD, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    _close_inherited_fds(keep=claim_fd)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
    return uvloop.run(_serve_claim(claim_fd, expected, waiting_priority, uid))


LOWEST_PRIORITY = 19
"""The nice value spares get ready at, where they can take the template's priority back."""


def restore_priority(pid: int, priority: int) -> None:
    """Give every thread of `pid` the nice value `priority`: a nice value is a thread's own, and a waiting
    runner's threads (its rehearsal's worker thread, say) were started at the waiting priority."""
    with contextlib.suppress(OSError):  # the process is gone
        for thread_id in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError):  # the thread is gone
                os.setpriority(os.PRIO_PROCESS, int(thread_id), priority)


def priority_is_restorable() -> bool:
    """Whether a process may raise its CPU priority back after lowering it: only with CAP_SYS_NICE or a high
    enough RLIMIT_NICE, which neither /proc nor the capability sets of a user namespace tell reliably. A
    throwaway fork tries."""
    pid = os.fork()
    if pid == 0:
        code = 1
        with contextlib.suppress(OSError):
            priority = os.getpriority(os.PRIO_PROCESS, 0)
            os.setpriority(os.PRIO_PROCESS, 0, LOWEST_PRIORITY)
            os.setpriority(os.PRIO_PROCESS, 0, priority)
            code = 0
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0


class Template:
    def __init__(
        self,
        spares: int,
        waiting_priority: int | None,
        runner_uid_base: int | None = None,
        user_namespaces: bool = False,
    ) -> None:
        self._spares_wanted = spares
        self._waiting_priority = waiting_priority
        self._runner_uid_base = runner_uid_base
        self._user_namespaces = user_namespaces
        self._priority = os.getpriority(os.PRIO_PROCESS, 0)
        self._spares: deque[_Fork] = deque()
        self._forks: dict[int, _Fork] = {}
        self._selector = selectors.DefaultSelector()
        self._input = b""
        self._expected = Expected()
        self._refill_at: float | None = None

    def serve(self) -> None:
        self._selector.register(sys.stdin.fileno(), selectors.EVENT_READ)
        self._refill()
        while True:
            timeout = None if self._refill_at is None else max(0.0, self._refill_at - time.monotonic())
            for key, _ in self._selector.select(timeout):
                if key.fd == sys.stdin.fileno():
                    if not self._read_claims():
                        self._close_spares()
                        return
                else:
                    self._reap(self._forks[key.fd])
            if not self._spares or (self._refill_at is not None and time.monotonic() >= self._refill_at):
                self._refill()

    def _refill_soon(self) -> None:
        """A fork starting up takes a core for a few ms: while a spare is left, wait until the claimed runner
        has ended (or REFILL_DELAY_SECONDS) rather than compete with it."""
        if self._refill_at is None:
            self._refill_at = time.monotonic() + REFILL_DELAY_SECONDS

    def _free_uid(self) -> int | None:
        """The lowest runner user no live runner has: a runner's workspace cache (one per user) stays warm."""
        if self._runner_uid_base is None:
            return None
        taken = {fork.uid for fork in self._forks.values()}
        for uid in range(self._runner_uid_base, self._runner_uid_base + RUNNER_UIDS):
            if uid not in taken:
                return uid
        raise OSError(f"all {RUNNER_UIDS} runner users are in use")

    def _fork(self) -> _Fork:
        uid = self._free_uid()
        claim_read, claim_write = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                code = _runner_process(
                    claim_read, self._expected, self._waiting_priority, uid, self._user_namespaces
                )
            except BaseException:
                traceback.print_exc()  # into the runner's log once the claim is applied
                code = os.EX_SOFTWARE
            exit_now(code)
        os.close(claim_read)
        _send(ForkMade(pid=pid))
        fork = _Fork(pid=pid, pidfd=os.pidfd_open(pid), claim_fd=claim_write, uid=uid)
        self._forks[fork.pidfd] = fork
        self._selector.register(fork.pidfd, selectors.EVENT_READ)
        return fork

    def _refill(self) -> None:
        self._refill_at = None
        while len(self._spares) < self._spares_wanted:
            try:
                self._spares.append(self._fork())
            except OSError as exc:
                print(f"bifrost runner template: cannot fork a spare runner: {exc}", file=sys.stderr)
                return

    def _read_claims(self) -> bool:
        data = os.read(sys.stdin.fileno(), 65536)
        if not data:
            return False
        *lines, self._input = (self._input + data).split(b"\n")
        for line in lines:
            if line.strip():
                self._claim(line)
        return True

    def _claim(self, line: bytes) -> None:
        try:
            claim = RunnerClaim.model_validate_json(line)
        except ValidationError as exc:
            print(f"bifrost runner template: ignored a malformed claim: {exc}", file=sys.stderr)
            return
        self._expected = self._expected.after(claim)
        try:
            fork = self._spares.popleft() if self._spares else self._fork()
        except OSError as exc:
            _send(RunnerForkFailed(execution_id=claim.execution_id, error=f"fork failed: {exc}"))
            return
        fork.execution_id = claim.execution_id
        # Reported before the claim is handed over: if the template dies in between, the fork gets no claim
        # and exits, so a launch the backend did not hear of never runs.
        _send(RunnerForked(execution_id=claim.execution_id, pid=fork.pid))
        assert fork.claim_fd is not None
        if self._waiting_priority is not None:
            restore_priority(fork.pid, self._priority)  # so that it wakes to its claim at once
        with contextlib.suppress(BrokenPipeError):  # the fork died before its claim: reaping reports its end
            os.write(fork.claim_fd, line)
        os.close(fork.claim_fd)
        fork.claim_fd = None
        self._refill_soon()

    def _reap(self, fork: _Fork) -> None:
        _, status = os.waitpid(fork.pid, 0)
        self._selector.unregister(fork.pidfd)
        os.close(fork.pidfd)
        del self._forks[fork.pidfd]
        if fork.claim_fd is not None:  # a spare that died unclaimed
            os.close(fork.claim_fd)
            self._spares.remove(fork)
            return
        assert fork.execution_id is not None
        if self._refill_at is not None:
            self._refill_at = time.monotonic()
        _send(
            RunnerEnded(
                execution_id=fork.execution_id,
                pid=fork.pid,
                exit_code=os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
                signal=os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
            )
        )

    def _close_spares(self) -> None:
        for fork in self._spares:
            if fork.claim_fd is not None:
                os.close(fork.claim_fd)


async def _rehearse_http() -> None:
    """One request through the runner's HTTP client, against a throwaway loopback server: httpx loads most of
    its machinery (httpcore, anyio, h11, certificates) on first use, and the forks should find it loaded."""

    async def not_found(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(not_found, "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        api = ApiClient(f"http://127.0.0.1:{port}", "rehearsal")
        try:
            await api.config("rehearsal")
        finally:
            await api.aclose()


def _protocol_fds(value: str) -> tuple[int, int]:
    claims, messages = value.split(",")
    return int(claims), int(messages)


def _init_of_sandbox() -> None:
    """As the first process of a PID namespace (the runners' sandbox), run the template in a child and stay as
    the namespace's init, reaping, until no process is left in it: the namespace, and every runner in it, ends
    with its init, and runners outlive their template."""
    if os.fork() == 0:
        return
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1):  # the template's protocol: its end is seen when the template exits
        os.dup2(devnull, fd)
    while True:
        try:
            os.wait()
        except ChildProcessError:
            os._exit(0)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bifrost_runner.zygote", description=__doc__)
    parser.add_argument("--spares", type=int, default=2, help="forks kept ready for the next claims")
    parser.add_argument(
        "--protocol-fds",
        type=_protocol_fds,
        metavar="CLAIMS,MESSAGES",
        help="read claims from, and write messages to, these inherited descriptors (default: stdin, stdout)",
    )
    parser.add_argument(
        "--runner-uid-base",
        type=int,
        help=f"(as root) each runner becomes a user of its own, one of the {RUNNER_UIDS} from this id on",
    )
    parser.add_argument(
        "--runner-user-namespaces",
        action="store_true",
        help="each runner runs in a user namespace of its own (as the template's user)",
    )
    args = parser.parse_args()
    if args.spares < 0:
        parser.error("--spares must be 0 or more")
    if args.runner_uid_base is not None and (args.runner_uid_base < 1 or os.geteuid() != 0):
        parser.error("--runner-uid-base needs root and an id above 0")
    if args.runner_uid_base is not None and args.runner_user_namespaces:
        parser.error("--runner-uid-base and --runner-user-namespaces exclude each other")
    # Every claim passes through the template, and its forks wait for theirs: none may be read or attached to by
    # a runner of the same user. Forks inherit this, so a spare is never open to that before its claim.
    _not_dumpable()
    if args.protocol_fds is not None:
        for fd, target in zip(args.protocol_fds, (0, 1), strict=True):
            os.dup2(fd, target)
            os.close(fd)
    if os.getpid() == 1:
        _init_of_sandbox()
    _send(TemplateStarted(pid=os.getpid()))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the control plane stops us by closing stdin
    configure_runner_logging()
    # Set here once for every runner: setting a level walks every logger there is.
    logging.getLogger().setLevel(WORKFLOW_LOG_LEVEL)
    # The first call probes the folder by creating and removing a file: done here once, not in every runner.
    tempfile.gettempdir()
    uvloop.run(_rehearse_http())
    # Everything loaded so far is shared with the forks copy-on-write: kept out of the collector's reach, it is
    # not copied into each fork by garbage collection passes touching it.
    gc.freeze()
    waiting_priority = LOWEST_PRIORITY if priority_is_restorable() else None
    Template(args.spares, waiting_priority, args.runner_uid_base, args.runner_user_namespaces).serve()


if __name__ == "__main__":
    main()
