"""`python -m bifrost_runner.zygote`: the local backend's runner template.

It imports everything a runner needs once (never any workspace code), then forks one single-use runner per claim. A few
forks wait ready ("spares"), so starting a run costs a pipe write, not an interpreter start. A spare waits with its
client for the control plane's API at the URL of the last claim, having rehearsed an execution once (see
`bifrost_runner.run.rehearse`) unless it was made while as many runs as the template has cores were running: a rehearsal
then takes a core from them, and the next claim comes before it pays off. A claim sent elsewhere makes a client anew. A
spare given a slot (see `RunnerSlot`) connects to NATS under its identity while it waits, and serves that slot's
execution alone; it is ended unclaimed before the identity expires (`SlotDropped`). Spares holding no slot serve the
other executions and connect to NATS once their claim came: the claim brings the execution's own NATS identity. A used
spare is replaced once its runner ends, or shortly after, so that a new fork does not compete with the run for a core,
and never while a claim waits to be read: the claim is served first; where the runner can take its priority back (see
`priority_is_restorable`), a spare gets ready at the lowest CPU priority from its first instruction on, so that it never
competes with running work, and runs its claim at the template's priority. The template reads claims and slots on stdin,
one line each (see `bifrost._internal.protocol.claim_line`), into memory its forks see zeroed, and passes each on to its
runner reading only its header: no runner finds another execution's secrets in the memory it inherits. It writes
`TemplateStarted`, then `ForkMade` / `RunnerForked` / `RunnerEnded` / `RunnerForkFailed` / `SlotDropped` lines on
stdout; reaps its runners; and exits when stdin closes, leaving running runners to finish. With `--claims-once-moved`,
the backend moves each fork into a cgroup of its own once told of it (`ForkMade`), and says so (`ForkMoved`); the
template hands claims to forks moved first, and holds a claim given to a fork not moved yet until it is: no runner runs
a moment outside its limits. Started as the first process of a PID namespace (the local runners' sandbox), it stays as
that namespace's init while the template runs in a child.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import mmap
import os
import re
import resource
import secrets
import select
import selectors
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn

import uvloop
from pydantic import BaseModel, ValidationError

from bifrost._internal.prepared_files import PreparedFile
from bifrost._internal.protocol import (
    ClaimHeader,
    ForkMade,
    ForkMoved,
    RunnerClaim,
    RunnerEnded,
    RunnerForked,
    RunnerForkFailed,
    SlotDropped,
    SlotHeader,
    TemplateStarted,
    runner_message_adapter,
    template_header_adapter,
)
from bifrost_runner.api import ApiClient
from bifrost_runner.confinement import (
    CAP_SYS_ADMIN,
    Confinement,
    ExitWatch,
    PidNamespaces,
    RunnerFolders,
    drop_capabilities,
    held_capabilities,
    keep_to_this_run,
    limit,
    mounted_inside_tmp,
    own_user_namespace,
    set_dumpable,
    set_not_dumpable,
)
from bifrost_runner.connection import ReadyConnection
from bifrost_runner.logs import WORKFLOW_LOG_LEVEL
from bifrost_runner.process import configure_runner_logging, exit_now, run_from_env
from bifrost_runner.run import Preconnected, preconnect, rehearse

REFILL_DELAY_SECONDS = 0.1
"""The longest a used spare is not replaced while another one is ready."""
RUNNER_UIDS = 10_000
"""With `--runner-uid-base`, how many users runners get: at most this many run at once."""
SPARE_FAILED_DELAY_SECONDS = 1.0
"""After a spare died before its claim, how long the template waits before forking another."""
INPUT_BUFFER_BYTES = 1024 * 1024
"""What the template reads its input into at first; a longer line gets a larger buffer."""
MAX_CLAIM_LINE_BYTES = 1024 * 1024 * 1024
"""The longest line a runner reads from its claim pipe."""
_RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_MADV_WIPEONFORK = getattr(mmap, "MADV_WIPEONFORK", 18)
"""Linux's value (Python 3.11 does not name it)."""


@dataclass
class _Fork:
    pid: int
    pidfd: int
    claim_fd: int | None
    """Write end of the claim pipe while the fork waits for its claim."""
    uid: int | None
    """The user the runner becomes when its workflow starts; None: the template's."""
    execution_id: str | None = None
    status_fd: int | None = None
    """Confined: read end of the pipe on which the runner's keeper (the fork) tells how the runner ended."""
    run: str | None = None
    """Confined: the name of the run's folder among the runner folders."""
    slot: str | None = None
    """The slot given to the fork while it waits (see `RunnerSlot`)."""
    retire_at: float | None = None
    """When a spare holding a slot is ended unclaimed (Unix time)."""
    moved: bool = True
    """False until the backend said the fork is in its cgroup (see `--claims-once-moved`): no claim reaches it
    before."""
    held_claim: mmap.mmap | None = None
    """The claim given to the fork before it was moved, kept until it is."""


def _wiped_map(size: int) -> mmap.mmap:
    """Anonymous memory that the template's forks see zeroed: where the template keeps what it passes on to
    runners (their claims hold an execution's secrets), so that no later fork, which may run another
    organization's code, finds them in the memory it inherits."""
    mapped = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)  # wiped only if private
    mapped.madvise(_MADV_WIPEONFORK)
    return mapped


def _write_all(fd: int, data: memoryview | mmap.mmap) -> None:
    with memoryview(data) as view:
        written = 0
        while written < len(view):
            with view[written:] as rest:
                written += os.write(fd, rest)


class _Input:
    """The template's input, read into memory its forks see zeroed (see `_wiped_map`). Each whole line goes to a
    handler as its header's bytes and a view of its body with the newline, valid while the handler runs."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._map = _wiped_map(INPUT_BUFFER_BYTES)
        self._start = 0
        self._end = 0

    def read(self, on_line: Callable[[bytes, memoryview], None]) -> bool:
        """Read what is there and hand out every whole line; False at the end of the input."""
        if self._end == len(self._map):
            self._make_room()
        with memoryview(self._map) as view, view[self._end :] as free:
            count = os.readv(self._fd, [free])
        if count == 0:
            return False
        self._end += count
        while (newline := self._map.find(b"\n", self._start, self._end)) != -1:
            start, self._start = self._start, newline + 1
            tab = self._map.find(b"\t", start, newline)
            if tab == -1:
                print("bifrost runner template: ignored a line without a claim", file=sys.stderr)
                continue
            with memoryview(self._map) as view, view[tab + 1 : newline + 1] as body:
                on_line(self._map[start:tab], body)
        if self._start == self._end:
            self._start = self._end = 0
        return True

    def _make_room(self) -> None:
        pending = self._end - self._start
        if self._start > 0:
            self._map.move(0, self._start, pending)
        else:  # one line longer than the buffer
            larger = _wiped_map(2 * len(self._map))
            with memoryview(self._map) as view, view[:pending] as part:
                larger[:pending] = part
            self._map.close()
            self._map = larger
        self._start, self._end = 0, pending

    def close(self) -> None:
        self._map.close()


@dataclass
class _PendingSlot:
    header: SlotHeader
    body: mmap.mmap


def _send(message: BaseModel) -> None:
    os.write(sys.stdout.fileno(), message.model_dump_json().encode() + b"\n")


_FD_CEILING = 2**31 - 1
"""Above any descriptor number there can be."""


def _close_inherited_fds(keep: set[int]) -> None:
    """Close every descriptor above stderr but those in `keep`: a few `close_range` calls."""
    low = 3
    for fd in sorted(keep):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, _FD_CEILING)


def _to_devnull(fds: tuple[int, ...]) -> None:
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in fds:
        os.dup2(devnull, fd)
    os.close(devnull)


def _open_log(claim: RunnerClaim, prepared: PreparedFile | None, confinement: Confinement | None) -> int:
    """The runner's log file: the one prepared while waiting, named now, else a new one."""
    path = confinement.log_path(claim.log_path) if confinement is not None else claim.log_path
    if prepared is not None:
        try:
            return prepared.name(path)
        except OSError:  # taken, or in another folder than the last claim's
            prepared.discard()
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)


def _apply_claim(claim: RunnerClaim, prepared_log: PreparedFile | None, confinement: Confinement | None) -> None:
    log_fd = _open_log(claim, prepared_log, confinement)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(log_fd)
    if claim.memory_limit_bytes is not None:
        limit(resource.RLIMIT_AS, claim.memory_limit_bytes, claim.memory_limit_bytes)
    if claim.cpu_limit_seconds is not None:
        # SIGXCPU at the soft limit, SIGKILL at the hard one.
        limit(resource.RLIMIT_CPU, claim.cpu_limit_seconds, claim.cpu_limit_seconds + 5)
    if confinement is not None:
        # Until the runner seals itself (its workflow about to start), it writes the runners' workspace cache:
        # readable by the runners of every user.
        os.umask(0o022)
        confinement.max_processes = claim.max_processes
    else:
        os.umask(0o077)
        if claim.max_processes is not None:
            limit(resource.RLIMIT_NPROC, claim.max_processes, claim.max_processes)
    os.environ.clear()
    os.environ.update(claim.env)


@dataclass(frozen=True)
class Expected:
    """What the last claim looked like, for the next runners to get ready for."""

    api_url: str | None = None
    """Where the last claim's runner called the API: the next runners make their client for it ahead."""
    log_folder: str | None = None
    """Where the last claim's runner logged: the next runners make their log file there ahead."""

    def after(self, claim: ClaimHeader) -> Expected:
        """What to expect after `claim`: what it says, and what was expected before where it says nothing."""
        return Expected(claim.api_url or self.api_url, claim.log_folder or self.log_folder)


async def _read_claim(claim_fd: int) -> tuple[RunnerClaim | None, ReadyConnection | None]:
    """The claim, None when the pipe closes first; and the connection made under the slot given meanwhile."""
    reader = asyncio.StreamReader(limit=MAX_CLAIM_LINE_BYTES)
    transport, _ = await asyncio.get_running_loop().connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(claim_fd, "rb", buffering=0)
    )
    ready: ReadyConnection | None = None
    try:
        while line := await reader.readline():
            message = runner_message_adapter.validate_json(line)
            if isinstance(message, RunnerClaim):
                return message, ready
            if ready is not None:
                await ready.close()
            ready = ReadyConnection(message)
        return None, ready
    finally:
        transport.close()


async def _get_ready(api_url: str, rehearsing: bool) -> Preconnected:
    preconnected = preconnect(api_url)
    if rehearsing:
        # A failed rehearsal costs the execution only its head start; the runner must serve its claim regardless.
        with contextlib.suppress(Exception):
            await rehearse(preconnected)
    return preconnected


@dataclass(frozen=True)
class _Setup:
    """How a fork gets ready for its claim."""

    expected: Expected
    waiting_priority: int | None
    """The nice value the fork gets ready at, from its first instruction on (None: the template's); it takes
    `priority` back once its claim came."""
    priority: int
    """The template's nice value, which the runner runs its claim at."""
    uid: int | None
    """The user the runner becomes when its workflow starts (confined runners only); None: the template's."""
    own_user_namespace: bool
    probe: bool = False
    """Only get ready and take the workflow's user, then end (see `Template.probe`)."""
    rehearsing: bool = True
    """Rehearse while waiting for the claim. Not for a fork made for a claim that is already waiting: it would
    rehearse before its execution instead of while it waits, a delay its execution's own page copies do not need;
    nor while the cores are busy with runs (see `Template._cores_busy`)."""


async def _serve_claim(claim_fd: int, setup: _Setup, confinement: Confinement | None) -> int:
    """Make the API client and the log file where the execution is expected to use them and rehearse while
    waiting for the claim, then run it."""
    log_folder = confinement.log_folder if confinement is not None else setup.expected.log_folder
    prepared_log = PreparedFile.make(log_folder, os.O_WRONLY | os.O_APPEND) if log_folder else None
    api_url = setup.expected.api_url
    connecting = asyncio.ensure_future(_get_ready(api_url, setup.rehearsing)) if api_url else None
    claim, ready = await _read_claim(claim_fd)
    if setup.waiting_priority is not None:
        # The template restored it before handing the claim over; a thread started meanwhile is seen to here.
        restore_priority(0, setup.priority)
    preconnected = await connecting if connecting else None
    if claim is None:  # the template went away (or retired this spare) before a claim came
        if preconnected is not None:
            await preconnected.close()
        if ready is not None:
            await ready.close()
        return 0
    _apply_claim(claim, prepared_log, confinement)
    return await run_from_env(preconnected, claim.payload, confinement, ready)


def _lower_priority(setup: _Setup) -> None:
    """A spare's start (its namespaces, its imports, its rehearsal) must not take a core from a run: lowered once
    the fork is its own process group, so that the template's `restore_priority` reaches it; should the claim come
    before, the runner takes its priority back itself once it read the claim."""
    if setup.waiting_priority is not None:
        os.setpriority(os.PRIO_PROCESS, 0, setup.waiting_priority)


def _runner_process(claim_fd: int, setup: _Setup, confinement: Confinement | None) -> int:
    """In the runner: wait for the claim, run the one execution. Unconfined, the runner is the fork itself and
    detaches from the template; confined, its keeper did."""
    if confinement is None:
        os.setsid()
        _lower_priority(setup)
    if setup.own_user_namespace:
        own_user_namespace()
        set_not_dumpable()
        if confinement is not None:
            drop_capabilities()  # those it has in its own user namespace: a workflow needs none of them
    for signum in (signal.SIGTERM, signal.SIGCHLD, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    _close_inherited_fds(keep={claim_fd} | (confinement.fds if confinement is not None else set()))
    if setup.probe:
        if confinement is not None:
            confinement.seal()
        return 0
    _to_devnull((0, 1, 2))
    return uvloop.run(_serve_claim(claim_fd, setup, confinement))


def _keeper(
    claim_fd: int, status_fd: int, setup: _Setup, folders: RunnerFolders, run_fd: int, carried_mounts: tuple[str, ...]
) -> NoReturn:
    """In the fork, the first process of its own PID namespace: give the namespace its own mounts (see
    `confinement`), start the runner, wait for it, then tell the template how it ended and exit, which ends every
    process left in the namespace."""
    os.setsid()
    _lower_priority(setup)  # its runner inherits it
    try:
        confinement = keep_to_this_run(folders, run_fd, carried_mounts)
        os.close(run_fd)
        confinement.uid = setup.uid
        drop_capabilities(keep=held_capabilities() - {CAP_SYS_ADMIN})
        traced_read, traced_write = os.pipe()
        # Dumpable for a moment, so that the runner can be traced: no other run's process can see this namespace.
        set_dumpable()
        runner = os.fork()
    except OSError as exc:
        print(f"bifrost runner template: cannot make a runner's namespaces: {exc}", file=sys.stderr, flush=True)
        os._exit(os.EX_OSERR)
    if runner == 0:
        try:
            os.close(traced_write)
            os.read(traced_read, 1)  # until the keeper traces this process (or gave up)
            os.close(traced_read)
            set_not_dumpable()
            code = _runner_process(claim_fd, setup, confinement)
        except BaseException:
            traceback.print_exc()  # into the runner's log once the claim is applied
            code = os.EX_SOFTWARE
        exit_now(code)
    watch = ExitWatch(runner)
    watch.start()
    os.close(traced_write)
    set_not_dumpable()
    _close_inherited_fds(keep={status_fd})
    _to_devnull((0, 1, 2))
    while True:
        pid, status = os.waitpid(-1, 0)  # orphans of the run come here too
        if pid != runner:
            continue
        if not os.WIFSTOPPED(status):
            break
        watch.stopped(status)
    with contextlib.suppress(OSError):  # the template is gone
        os.write(status_fd, f"{status} {int(watch.at_memory_limit)}".encode())
    os._exit(0)


LOWEST_PRIORITY = 19
"""The nice value spares get ready at, where they can take the template's priority back."""


def restore_priority(process_group: int, priority: int) -> None:
    """Give every thread of every process of `process_group` (0: this process's) the nice value `priority`: a nice
    value is a thread's own, and a waiting runner's threads (its rehearsal's worker thread, say) were started at
    the waiting priority. A fork is its runner's process group (confined, its keeper, the runner's parent, is)."""
    with contextlib.suppress(OSError):  # gone, or not a process group yet: then none of it waits at low priority
        os.setpriority(os.PRIO_PGRP, process_group, priority)


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
        folders: RunnerFolders | None = None,
        claims_once_moved: bool = False,
    ) -> None:
        """`folders`: confine each runner to namespaces of its own (see `confinement`), with its part of these
        folders; None: runners are the template's plain forks. `claims_once_moved`: hand a fork its claim only once
        the backend said it moved it into its cgroup (`ForkMoved`)."""
        self._spares_wanted = spares
        self._claims_once_moved = claims_once_moved
        self._waiting_priority = waiting_priority
        self._runner_uid_base = runner_uid_base
        self._user_namespaces = user_namespaces
        self._folders = folders
        self._pid_namespaces = PidNamespaces() if folders is not None else None
        self._carried_mounts = mounted_inside_tmp() if folders is not None else ()
        self._priority = os.getpriority(os.PRIO_PROCESS, 0)
        self._cores = len(os.sched_getaffinity(0))
        self._spares: deque[_Fork] = deque()
        self._forks: dict[int, _Fork] = {}
        self._pending_slots: deque[_PendingSlot] = deque()
        """Slots no spare holds yet: the next spares made get them."""
        self._selector = selectors.DefaultSelector()
        self._input = _Input(sys.stdin.fileno())
        self._expected = Expected()
        self._refill_at: float | None = None
        self._held_back = False
        """A spare died before its claim: no new one before `_refill_at`, lest a fork that cannot start loop."""

    def serve(self) -> None:
        self._selector.register(sys.stdin.fileno(), selectors.EVENT_READ)
        self._refill()
        while True:
            for key, _ in self._selector.select(self._timeout()):
                if key.fd == sys.stdin.fileno():
                    if not self._input.read(self._on_line):
                        self._close_spares()
                        return
                else:
                    self._reap(self._forks[key.fd])
            self._retire_slots()
            due = self._refill_at is not None and time.monotonic() >= self._refill_at
            if self._wants_spares() and (
                due or (not self._held_back and (not self._spares or self._refill_at is None))
            ):
                self._refill()

    def _input_waiting(self) -> bool:
        return bool(select.select([sys.stdin.fileno()], [], [], 0)[0])

    def _wants_spares(self) -> bool:
        """Fewer spares holding no slot than wanted, or a slot waiting for a spare: a spare holding a slot is kept
        for that slot's execution alone (the control plane keeps as many slots waiting as it wants spares)."""
        free = sum(1 for spare in self._spares if spare.slot is None)
        return free < self._spares_wanted or bool(self._pending_slots)

    def _timeout(self) -> float | None:
        """Until the next refill or retirement of a slot."""
        timeouts = [] if self._refill_at is None else [self._refill_at - time.monotonic()]
        retire_at = [fork.retire_at for fork in self._spares if fork.retire_at is not None]
        retire_at += [pending.header.retire_at for pending in self._pending_slots]
        if retire_at:
            timeouts.append(min(retire_at) - time.time())
        return max(0.0, min(timeouts)) if timeouts else None

    def _refill_soon(self) -> None:
        """A fork starting up takes a core for a few ms: while a spare is left, wait until the claimed runner
        has ended (or REFILL_DELAY_SECONDS) rather than compete with it."""
        if self._refill_at is None:
            self._refill_at = time.monotonic() + REFILL_DELAY_SECONDS

    def _cores_busy(self) -> bool:
        """Whether as many runs are running as the template may use cores. A rehearsal costs its spare CPU of its
        own (some 5 ms on a virtual machine) to take page copies off its execution's clock: with every core busy, it
        takes that CPU from running executions, and queued claims come before it is done."""
        running = sum(1 for fork in self._forks.values() if fork.execution_id is not None)
        return running >= self._cores

    def _free_uid(self) -> int | None:
        """The lowest runner user no live runner has. A user is free again once its runner's keeper is reaped:
        its PID namespace, and with it every process of that user, has ended then."""
        if self._runner_uid_base is None:
            return None
        taken = {fork.uid for fork in self._forks.values()}
        for uid in range(self._runner_uid_base, self._runner_uid_base + RUNNER_UIDS):
            if uid not in taken:
                return uid
        raise OSError(f"all {RUNNER_UIDS} runner users are in use")

    def _fork(self, *, claimed: bool = False) -> _Fork:
        setup = _Setup(
            self._expected,
            None if claimed else self._waiting_priority,
            self._priority,
            self._free_uid(),
            self._user_namespaces,
            rehearsing=not claimed and not self._cores_busy(),
        )
        claim_read, claim_write = os.pipe()
        if self._folders is None or self._pid_namespaces is None:
            pid = os.fork()
            if pid == 0:
                try:
                    code = _runner_process(claim_read, setup, None)
                except BaseException:
                    traceback.print_exc()  # into the runner's log once the claim is applied
                    code = os.EX_SOFTWARE
                exit_now(code)
            os.close(claim_read)
            fork = _Fork(pid=pid, pidfd=os.pidfd_open(pid), claim_fd=claim_write, uid=setup.uid)
        else:
            fork = self._confined_fork(setup, claim_read, claim_write, self._folders, self._pid_namespaces)
        fork.moved = not self._claims_once_moved
        _send(ForkMade(pid=fork.pid))
        self._forks[fork.pidfd] = fork
        self._selector.register(fork.pidfd, selectors.EVENT_READ)
        return fork

    def _confined_fork(
        self, setup: _Setup, claim_read: int, claim_write: int, folders: RunnerFolders, pid_namespaces: PidNamespaces
    ) -> _Fork:
        run = f"spare-{secrets.token_hex(8)}"
        try:
            folders.make_run_folder(run)
            run_fd = os.open(folders.run_folder(run), os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            status_read, status_write = os.pipe()
        except OSError:
            os.close(claim_read)
            os.close(claim_write)
            raise
        pid_namespaces.prepare()
        try:
            pid = os.fork()
        except BaseException:
            pid_namespaces.restore()
            raise
        if pid == 0:
            _keeper(claim_read, status_write, setup, folders, run_fd, self._carried_mounts)
        pid_namespaces.restore()
        os.close(claim_read)
        os.close(status_write)
        os.close(run_fd)
        os.set_blocking(status_read, False)
        return _Fork(
            pid=pid, pidfd=os.pidfd_open(pid), claim_fd=claim_write, uid=setup.uid, status_fd=status_read, run=run
        )

    def _refill(self) -> None:
        """Give the slots waiting to spares holding none, and make spares up to the number wanted; but a line waiting
        to be read (a claim, most likely) is served first: a fork takes the template a few ms."""
        self._refill_at = None
        self._held_back = False
        while self._wants_spares():
            spare = next((fork for fork in self._spares if fork.slot is None), None) if self._pending_slots else None
            if spare is None:
                if self._input_waiting():
                    self._refill_at = time.monotonic()
                    return
                try:
                    spare = self._fork()
                except OSError as exc:
                    print(f"bifrost runner template: cannot fork a spare runner: {exc}", file=sys.stderr)
                    return
                self._spares.append(spare)
            if self._pending_slots:
                pending = self._pending_slots.popleft()
                self._give_slot(spare, pending.header, pending.body)
                pending.body.close()

    def _on_line(self, header_line: bytes, body: memoryview) -> None:
        try:
            header = template_header_adapter.validate_json(header_line)
        except ValidationError as exc:
            print(f"bifrost runner template: ignored a malformed line: {exc}", file=sys.stderr)
            return
        if isinstance(header, SlotHeader):
            self._add_slot(header, body)
        elif isinstance(header, ForkMoved):
            self._fork_moved(header.pid)
        else:
            self._claim(header, body)

    def _add_slot(self, header: SlotHeader, body: memoryview) -> None:
        """Keep the slot for the next refill: a spare given one connects to NATS at once, which is not to compete
        with a run just claimed (see `_refill_soon`)."""
        kept = _wiped_map(len(body))
        kept[:] = body
        self._pending_slots.append(_PendingSlot(header, kept))

    @staticmethod
    def _give_slot(spare: _Fork, header: SlotHeader, body: memoryview | mmap.mmap) -> None:
        assert spare.claim_fd is not None
        spare.slot, spare.retire_at = header.execution_id, header.retire_at
        with contextlib.suppress(BrokenPipeError):  # the spare died: reaping reports its slot dropped
            _write_all(spare.claim_fd, body)

    def _retire_slots(self) -> None:
        """End the spares, and drop the slots no spare holds yet, whose identity expires soon."""
        now = time.time()
        for spare in [fork for fork in self._spares if fork.retire_at is not None and fork.retire_at <= now]:
            assert spare.claim_fd is not None and spare.slot is not None
            self._spares.remove(spare)
            os.close(spare.claim_fd)  # it exits; reaping it reports nothing
            spare.claim_fd = None
            _send(SlotDropped(execution_id=spare.slot))
        for pending in [pending for pending in self._pending_slots if pending.header.retire_at <= now]:
            self._drop_pending(pending)

    def _drop_pending(self, pending: _PendingSlot) -> None:
        self._pending_slots.remove(pending)
        pending.body.close()
        _send(SlotDropped(execution_id=pending.header.execution_id))

    def _spare_for(self, claim: ClaimHeader) -> _Fork | None:
        """The spare holding the execution's slot, else one holding no slot (another slot's identity is for another
        execution), one in its cgroup first; None when there is neither."""
        for pending in self._pending_slots:
            if pending.header.execution_id == claim.execution_id:  # taken by its claim before any spare
                self._pending_slots.remove(pending)
                pending.body.close()
                break
        for wanted in (claim.execution_id, None):
            candidates = sorted((spare for spare in self._spares if spare.slot == wanted), key=lambda s: not s.moved)
            if candidates:
                self._spares.remove(candidates[0])
                return candidates[0]
        return None

    def _claim(self, claim: ClaimHeader, body: memoryview) -> None:
        if self._folders is not None and not _RUN_NAME.fullmatch(claim.execution_id):
            _send(RunnerForkFailed(execution_id=claim.execution_id, error="the execution id is no folder name"))
            return
        self._expected = self._expected.after(claim)
        try:
            fork = self._spare_for(claim) or self._fork(claimed=True)
        except OSError as exc:
            _send(RunnerForkFailed(execution_id=claim.execution_id, error=f"fork failed: {exc}"))
            return
        fork.execution_id = claim.execution_id
        if self._folders is not None and fork.run is not None:
            # Named after the execution, the run's folder is the control plane's to remove once the run ended.
            try:
                os.rename(self._folders.run_folder(fork.run), self._folders.run_folder(claim.execution_id))
                fork.run = claim.execution_id
            except OSError as exc:
                print(f"bifrost runner template: the folder of {fork.run} keeps its name: {exc}", file=sys.stderr)
        # Reported before the claim is handed over: if the template dies in between, the fork gets no claim
        # and exits, so a launch the backend did not hear of never runs.
        _send(RunnerForked(execution_id=claim.execution_id, pid=fork.pid))
        if fork.moved:
            self._hand_over(fork, body)
        else:  # until the backend moved it into its cgroup: a claim runs limited from its first instruction on
            fork.held_claim = _wiped_map(len(body))
            fork.held_claim[:] = body
        self._refill_soon()

    def _hand_over(self, fork: _Fork, claim: memoryview | mmap.mmap) -> None:
        assert fork.claim_fd is not None
        if self._waiting_priority is not None:
            restore_priority(fork.pid, self._priority)  # so that it wakes to its claim at once
        with contextlib.suppress(BrokenPipeError):  # the fork died before its claim: reaping reports its end
            _write_all(fork.claim_fd, claim)
        os.close(fork.claim_fd)
        fork.claim_fd = None

    def _fork_moved(self, pid: int) -> None:
        fork = next((fork for fork in self._forks.values() if fork.pid == pid), None)
        if fork is None:  # ended meanwhile
            return
        fork.moved = True
        if fork.held_claim is not None:
            self._hand_over(fork, fork.held_claim)
            fork.held_claim.close()
            fork.held_claim = None

    def _reap(self, fork: _Fork) -> None:
        _, status = os.waitpid(fork.pid, 0)
        self._selector.unregister(fork.pidfd)
        os.close(fork.pidfd)
        del self._forks[fork.pidfd]
        at_memory_limit = False
        if fork.status_fd is not None:
            # The keeper's word on how its runner ended; nothing when the keeper itself was killed.
            with contextlib.suppress(OSError, ValueError):
                runner_status, at_limit = os.read(fork.status_fd, 64).split()
                status, at_memory_limit = int(runner_status), at_limit == b"1"
            os.close(fork.status_fd)
        if fork.execution_id is None and self._folders is not None and fork.run is not None:
            shutil.rmtree(self._folders.run_folder(fork.run), ignore_errors=True)
        if fork.held_claim is not None:  # claimed, it died before it was moved: its end is reported below
            fork.held_claim.close()
            fork.held_claim = None
            assert fork.claim_fd is not None
            os.close(fork.claim_fd)
            fork.claim_fd = None
        if fork.claim_fd is not None:  # a spare that died unclaimed
            os.close(fork.claim_fd)
            self._spares.remove(fork)
            if fork.slot is not None:
                _send(SlotDropped(execution_id=fork.slot))
            self._held_back = True
            self._refill_at = time.monotonic() + SPARE_FAILED_DELAY_SECONDS
            return
        if fork.execution_id is None:  # a spare retired with its slot
            return
        if self._refill_at is not None:
            self._refill_at = time.monotonic()
        _send(
            RunnerEnded(
                execution_id=fork.execution_id,
                pid=fork.pid,
                exit_code=os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
                signal=os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
                memory_limit_reached=at_memory_limit,
            )
        )

    def _close_spares(self) -> None:
        """Close the claim pipes of the forks waiting for a claim (a claim not handed over yet is dropped: its
        runner ends without running it), so that they exit."""
        for fork in self._forks.values():
            if fork.held_claim is not None:
                fork.held_claim.close()
                fork.held_claim = None
        for fork in self._forks.values():
            if fork.claim_fd is not None:
                os.close(fork.claim_fd)
                fork.claim_fd = None
        for pending in self._pending_slots:
            pending.body.close()
        self._input.close()

    def probe(self) -> int:
        """Fork one runner as for a claim, and have it take the user its workflow would run as, then end: 0 when
        all of it worked, else 1, having said what failed on stderr."""
        self._expected = Expected()
        setup = _Setup(self._expected, None, self._priority, self._free_uid(), self._user_namespaces, probe=True)
        claim_read, claim_write = os.pipe()
        if self._folders is None or self._pid_namespaces is None:
            print("bifrost runner template: --probe is for confined runners", file=sys.stderr)
            return 1
        fork = self._confined_fork(setup, claim_read, claim_write, self._folders, self._pid_namespaces)
        _, status = os.waitpid(fork.pid, 0)
        runner_status = os.read(fork.status_fd, 64) if fork.status_fd is not None else b""
        if fork.run is not None:
            shutil.rmtree(self._folders.run_folder(fork.run), ignore_errors=True)
        if status != 0 or runner_status != b"0 0":
            print(
                f"bifrost runner template: a confined runner did not start (keeper status {status}, runner status "
                f"{runner_status.decode() or 'none'})",
                file=sys.stderr,
            )
            return 1
        return 0


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
        help=f"(as root, confined) each runner becomes a user of its own, one of the {RUNNER_UIDS} from this id on",
    )
    parser.add_argument(
        "--runner-user-namespaces",
        action="store_true",
        help="each runner runs in a user namespace of its own (as the template's user)",
    )
    parser.add_argument("--runner-tmp", help="confine runners: each gets its /tmp and /dev/shm in this folder")
    parser.add_argument("--runner-cache", help="confine runners: the workspace cache, read-only to workflows")
    parser.add_argument("--runner-logs", help="confine runners: the runners' log folder, hidden from workflows")
    parser.add_argument(
        "--probe", action="store_true", help="start one confined runner that ends at once; exit 1 if it fails"
    )
    parser.add_argument(
        "--claims-once-moved",
        action="store_true",
        help="hand a fork its claim only once told it is in its cgroup (a fork_moved line naming its pid)",
    )
    args = parser.parse_args()
    folder_args = (args.runner_tmp, args.runner_cache, args.runner_logs)
    if args.spares < 0:
        parser.error("--spares must be 0 or more")
    if args.runner_uid_base is not None and (args.runner_uid_base < 1 or os.geteuid() != 0):
        parser.error("--runner-uid-base needs root and an id above 0")
    if args.runner_uid_base is not None and args.runner_user_namespaces:
        parser.error("--runner-uid-base and --runner-user-namespaces exclude each other")
    if any(folder_args) and not all(folder_args):
        parser.error("--runner-tmp, --runner-cache and --runner-logs go together")
    if (args.runner_uid_base is not None or args.probe) and not all(folder_args):
        parser.error("--runner-uid-base and --probe need confined runners: --runner-tmp, --runner-cache, --runner-logs")
    folders = RunnerFolders(*folder_args) if all(folder_args) else None
    # Every claim passes through the template, and its forks wait for theirs: none may be read or attached to by
    # a runner of the same user. Forks inherit this, so a spare is never open to that before its claim.
    set_not_dumpable()
    if args.probe:
        sys.exit(Template(0, None, args.runner_uid_base, args.runner_user_namespaces, folders).probe())
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
    Template(
        args.spares,
        waiting_priority,
        args.runner_uid_base,
        args.runner_user_namespaces,
        folders,
        claims_once_moved=args.claims_once_moved,
    ).serve()


if __name__ == "__main__":
    main()
