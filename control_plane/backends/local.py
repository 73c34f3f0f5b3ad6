"""The `local` backend: a fresh OS process per execution, forked from a warm runner template.

The template (`python -m bifrost_runner.zygote`, see `local_template`) has the runner's imports loaded and
keeps forks ready, so a run costs a fork, not an interpreter start; each fork serves one execution and exits.
Given where NATS is (`connect_runners_to`), the backend also gives as many more forks a slot each (see
`RunnerSlot`): the id of an execution yet to be created, with that execution's NATS identity, under which the fork
connects while it waits; a sync run created with that id (`ready_execution_id`) then starts on a runner connected
already.
Runners get only their own configuration in their environment, never the control plane's, and run in a session
of their own under memory, process and CPU-time limits, in a sandbox (see `local_sandbox`) unless
`local_sandbox` is `none`. Where the control plane may make cgroups, each runner is moved into one of its own (see
`local_cgroups`), made for it as a spare, before the template hands it a claim: its memory and process limits are
the cgroup's, and removing the cgroup when the run ends kills whatever the run left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import os
import signal
import time
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bifrost._internal.protocol import (
    SLOT_RESERVED_UNTIL,
    ExecutionStatus,
    RunnerClaim,
    RunnerEnded,
    RunnerSlot,
    reported_status,
)
from control_plane.backends.base import ClaimChannel, ExitCallback, LaunchSpec, RunEnd, RunnerDetails, RunnerExit
from control_plane.backends.local_cgroups import (
    CgroupError,
    CgroupsUnavailable,
    ProcessGone,
    RunnerCgroup,
    RunnerCgroups,
)
from control_plane.backends.local_records import RunnerRecord, RunnerRecords, is_same_process, process_start_time
from control_plane.backends.local_sandbox import (
    SANDBOX_TMP,
    prepare_sandbox,
    process_limit_problem,
    remove_tree,
    runner_cache_dir,
    runner_tmp_dir,
    runs_as_root,
    template_options,
)
from control_plane.backends.local_template import UNSEEN, LaunchError, RunnerTemplate, TemplateGoneError
from control_plane.security.nats_identities import AccountSigner
from control_plane.settings import Settings

log = logging.getLogger(__name__)

KILL_GRACE_SECONDS = 3.0
"""After `kill` sends SIGTERM, how long the runner has before SIGKILL."""
TEMPLATE_RESTART_DELAY_SECONDS = 0.5
TEMPLATE_WAIT_SECONDS = 30.0
LOST_REASON = "runner process lost (control plane restarted)"
READY_IDENTITY_SECONDS = 600.0
"""How long the NATS identity of a ready runner's slot is valid (see `RunnerSlot` for how much of it is used)."""
LOG_TAIL_LINES = 50
"""Of a runner that failed, this many of its last output lines go with its exit report."""

_BASIC_ENV = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR")


SPARE_CGROUP_PREFIX = "spare-"


def basic_environment() -> dict[str, str]:
    """The few variables a process needs to behave normally; nothing of the control plane's configuration."""
    return {name: os.environ[name] for name in _BASIC_ENV if name in os.environ}


def exit_reason(
    exit_code: int | None, signum: int | None, kill_note: str | None = None, memory_limit_mb: int | None = None
) -> str:
    """`kill_note` says why the backend signalled the runner; it is kept only when a signal ended it.
    `memory_limit_mb`: the runner ended with its address space at this limit."""
    reason = _ending(exit_code, signum, kill_note)
    return f"memory limit of {memory_limit_mb} MB reached ({reason})" if memory_limit_mb is not None else reason


def _ending(exit_code: int | None, signum: int | None, kill_note: str | None) -> str:
    if signum is not None:
        try:
            name = signal.Signals(signum).name
        except ValueError:
            name = "unknown signal"
        reason = f"runner killed by signal {signum} ({name})"
        if signum == signal.SIGXCPU:
            return f"{reason}: its CPU-time limit was reached"
        return f"{reason} {kill_note}" if kill_note else reason
    reported = reported_status(exit_code)
    if reported is not None:
        return f"runner exited with code {exit_code}: it reported the execution {reported}"
    if exit_code is not None:
        return f"runner exited with code {exit_code}"
    return "runner ended; its exit status is unknown"


@dataclass
class _Runner:
    execution_id: str
    pid: int
    start_time: int | None
    memory_limit_mb: int | None = None
    kill_note: str | None = None
    """Why the backend itself stopped the runner, added to the exit reason."""
    timed_out: bool = False
    backstop: asyncio.TimerHandle | None = None
    watch: asyncio.Task[None] | None = None
    """Polls the pid of a runner the template does not report on (adopted after a restart, or orphaned)."""


class LocalBackend:
    name = "local"

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._records = RunnerRecords(settings.data_dir.resolve() / "runners")
        self._runners: dict[str, _Runner] = {}
        self._launching: set[str] = set()
        self._ended_while_launching: dict[str, RunnerEnded] = {}
        self._template: RunnerTemplate | None = None
        self._template_ready = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._sandbox: list[str] | None = None
        self._process_limit = False
        """Whether runners get `local_max_processes` as their process limit: only sandboxed, where it holds."""
        self._cgroups: RunnerCgroups | None = None
        self._spare_cgroups: dict[int, RunnerCgroup] = {}
        """The cgroup made for each fork of the template, by its pid, until a launch takes it."""
        self._runner_nats: tuple[str, AccountSigner | None] | None = None
        self._slots_out: set[str] = set()
        """Slots given to the template that a spare holds, or will."""
        self._ready_slots: dict[str, RunnerSlot] = {}
        """Of those, the ones no execution was given yet, oldest first."""
        self._reserved: set[str] = set()
        """Of those, the ones given to executions, whose runner has not taken its claim yet."""

    @property
    def cgroups(self) -> RunnerCgroups | None:
        """Where runners get cgroups of their own; None: they are limited by resource limits of their processes."""
        return self._cgroups

    @property
    def template_pid(self) -> int | None:
        return self._template.pid if self._template and self._template_ready.is_set() else None

    def connect_runners_to(self, nats_url: str, signer: AccountSigner | None) -> None:
        self._runner_nats = (nats_url, signer)

    def ready_execution_id(self) -> str | None:
        now = time.time()
        while self._ready_slots:
            execution_id = next(iter(self._ready_slots))
            slot = self._ready_slots.pop(execution_id)
            if slot.moment(SLOT_RESERVED_UNTIL) > now:
                self._reserved.add(execution_id)
                return execution_id
        self._offer_slot()  # for the next execution: slots are made as sync runs use them
        return None

    def _offer_slot(self) -> None:
        """Give the template a slot for a spare, unless as many slots as it keeps spares wait for an execution.
        (Slots given to executions do not count: such an execution may wait its turn at a concurrency limit.)"""
        template = self._template
        if self._runner_nats is None or template is None or not self._template_ready.is_set():
            return
        if len(self._slots_out) - len(self._reserved) >= self._settings.local_pool_size:
            return
        nats_url, signer = self._runner_nats
        execution_id = str(uuid.uuid4())
        issued_at = time.time()
        expires_at = issued_at + READY_IDENTITY_SECONDS
        identity = signer.runner(execution_id, datetime.fromtimestamp(expires_at, UTC)) if signer else None
        slot = RunnerSlot(
            execution_id=execution_id,
            nats_url=nats_url,
            nats_jwt=identity.jwt if identity else None,
            nats_seed=identity.seed if identity else None,
            issued_at=issued_at,
            expires_at=expires_at,
        )
        template.give_slot(slot)
        self._slots_out.add(execution_id)
        self._ready_slots[execution_id] = slot

    def _slot_gone(self, slot: str) -> None:
        """`slot` is claimed, or dropped unclaimed: another one takes its place."""
        if slot not in self._slots_out:
            return
        self._slots_out.discard(slot)
        self._ready_slots.pop(slot, None)
        self._reserved.discard(slot)
        # After the launch under way goes on: a slot takes a NATS identity to make.
        asyncio.get_running_loop().call_soon(self._offer_slot)

    async def start(self, on_exit: ExitCallback, claims: ClaimChannel | None = None) -> None:
        """`claims` is of no use here: this backend's spares get their slots over the template's pipe."""
        self._on_exit = on_exit
        self._stopping = False
        await asyncio.to_thread(self._records.prepare)
        if self._settings.local_sandbox == "bwrap":
            self._sandbox = await asyncio.to_thread(prepare_sandbox, self._settings, self._records.folder)
            await asyncio.to_thread(self._remove_run_folders)
            problem = None if runs_as_root() else process_limit_problem(os.uname().release)
            if problem:
                log.warning("%s", problem)
            self._process_limit = problem is None
        else:
            log.warning(
                "BIFROST_LOCAL_SANDBOX=none: local runners are NOT sandboxed. Workflow code runs as the control "
                "plane's user and can read its files (the data folder's keys and database), its environment and "
                "its memory. Use it only where every workflow author is trusted with all of that."
            )
        self._cgroups = await asyncio.to_thread(self._find_cgroups)
        await self._start_template()

    async def stop(self) -> None:
        self._stopping = True
        self._template_ready.clear()
        for runner in self._runners.values():
            if runner.backstop:
                runner.backstop.cancel()
            if runner.watch:
                runner.watch.cancel()
        if self._template:
            await self._template.close()
        spares, self._spare_cgroups = list(self._spare_cgroups.values()), {}
        await asyncio.to_thread(self._remove_cgroups, spares)
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._cgroups is not None:
            await asyncio.to_thread(self._cgroups.remove_if_unused)
        self._records.close()

    async def launch(self, spec: LaunchSpec) -> None:
        execution_id = spec.execution_id
        if execution_id in self._runners or execution_id in self._launching:
            return
        self._launching.add(execution_id)
        try:
            if not self._records.create(execution_id):
                # Launched before, by an earlier control-plane process that died before recording the launch:
                # watched from now on instead of run twice.
                self._reattach(execution_id)
                return
            try:
                pid = await self._fork(spec)
                if self._cgroups is not None and pid != UNSEEN:  # an unseen runner has ended already
                    self._enter_cgroup(self._cgroups, spec, pid)
            except LaunchError:
                self._records.remove(execution_id)
                raise
            runner = _Runner(execution_id, pid, process_start_time(pid), self._memory_limit_mb(spec))
            kill_at = time.time() + spec.timeout_seconds + self._settings.cancel_grace_seconds
            self._records.write(
                RunnerRecord(
                    execution_id=execution_id, pid=pid or None, start_time=runner.start_time, kill_at=kill_at
                )
            )
            self._adopt(runner, kill_at, timeout_seconds=spec.timeout_seconds)
        finally:
            self._launching.discard(execution_id)
        self._spawn(asyncio.to_thread(self._records.prepare))
        ended = self._ended_while_launching.pop(execution_id, None)
        if ended:
            self._runner_ended(ended)

    async def kill(self, execution_id: str) -> None:
        runner = self._runners.get(execution_id)
        if runner is None:
            return
        runner.kill_note = runner.kill_note or "at the control plane's request"
        self._signal(runner, signal.SIGTERM)
        self._spawn(self._kill_after_grace(runner))

    def runner_ref(self, execution_id: str) -> str | None:
        """The runner's pid."""
        runner = self._runners.get(execution_id)
        if runner is not None:
            return str(runner.pid) if runner.pid != UNSEEN else None
        record = self._records.read(execution_id)
        return str(record.pid) if record is not None and record.pid is not None else None

    def details(self, execution_id: str) -> RunnerDetails | None:
        return None

    async def run_ended(self, end: RunEnd) -> None:
        """Nothing outside the database shows a local run."""

    async def reconcile(self, active_execution_ids: list[str]) -> None:
        """Re-attach to the runners of `active_execution_ids` (those this backend launched): a runner still alive
        is watched until it ends; one that is gone is reported at once."""
        for execution_id in active_execution_ids:
            if execution_id not in self._runners and execution_id not in self._launching:
                self._reattach(execution_id)

    def _reattach(self, execution_id: str) -> None:
        """Watch the runner an earlier control-plane process started for `execution_id`, or report it ended."""
        record = self._records.read(execution_id)
        if record is not None and record.ended:
            self._report(RunnerExit(execution_id=execution_id, exit_code=record.exit_code, reason=record.reason))
        elif record is not None and record.pid is not None and is_same_process(record.pid, record.start_time):
            runner = _Runner(execution_id, record.pid, record.start_time)
            self._adopt(runner, record.kill_at, timeout_seconds=None)
            runner.watch = self._spawn(self._watch(runner, "(it outlived a control-plane restart)"))
        else:
            self._finish_record(execution_id, None, LOST_REASON)

    def _memory_limit_mb(self, spec: LaunchSpec) -> int:
        return (
            (spec.resources and spec.resources.memory_limit_mb)
            or spec.memory_limit_mb
            or self._settings.local_memory_limit_mb
        )

    async def _fork(self, spec: LaunchSpec) -> int:
        memory_limit_mb = self._memory_limit_mb(spec)
        claim = RunnerClaim(
            execution_id=spec.execution_id,
            env=self._runner_specific_environment(spec),
            log_path=str(self._records.log_path(spec.execution_id)),
            # In a cgroup, the cgroup's limit counts memory in use, not address space reserved.
            memory_limit_bytes=memory_limit_mb * 1024 * 1024 if self._cgroups is None else None,
            cpu_limit_seconds=spec.timeout_seconds + math.ceil(self._settings.cancel_grace_seconds),
            # RLIMIT_NPROC counts a user's processes: meaningful only for a runner with a user (or user namespace)
            # of its own, so not for unsandboxed runners, which share the control plane's user.
            max_processes=self._settings.local_max_processes if self._process_limit else None,
            payload=spec.payload,
        )
        template = await self._ready_template()
        self._slot_gone(spec.execution_id)
        try:
            return await template.fork(claim)
        except TemplateGoneError:
            # The claim reached no runner: wait for the restarted template and try once more.
            if self._template is template:
                self._template_ready.clear()
            return await (await self._ready_template()).fork(claim)

    def _find_cgroups(self) -> RunnerCgroups | None:
        """Where runner cgroups are made, with what an earlier control plane left there removed (its runners
        still running aside); None where there are none to have. Says which, in the log."""
        limits = (
            f"memory {self._settings.local_memory_limit_mb} MB, processes and threads "
            f"{self._settings.local_max_processes}"
        )
        name = "bifrost-" + hashlib.sha256(str(self._records.folder).encode()).hexdigest()[:12]
        try:
            cgroups = RunnerCgroups.find(name)
        except CgroupsUnavailable as unavailable:
            log.warning(
                "local runners get no cgroups of their own (%s): they are limited by resource limits of their "
                "processes (memory: RLIMIT_AS; processes and threads: RLIMIT_NPROC, sandboxed only; CPU time: "
                "RLIMIT_CPU) and share the control plane's cgroup",
                unavailable,
            )
            return None
        log.info(
            "local runners each get a cgroup of their own (%s, under %s; by default %s; CPU time: RLIMIT_CPU)",
            cgroups.kind,
            ", ".join(str(parent) for parent in cgroups.parents.values()),
            limits,
        )
        for leftover in cgroups.leftovers():
            try:
                record = None if leftover.startswith(SPARE_CGROUP_PREFIX) else self._records.read(leftover)
            except ValueError:  # no execution's name
                record = None
            if record is None or record.ended:
                self._remove_cgroups([cgroups.get(leftover)])
        return cgroups

    def _cgroup_processes(self) -> int:
        """A runner cgroup's process limit: a sandboxed runner's keeper counts too."""
        return self._settings.local_max_processes + (1 if self._sandbox is not None else 0)

    async def _fork_made(self, pid: int) -> bool:
        """A cgroup for the new fork `pid`, with the default limits, before it gets its claim; whether it is in
        it."""
        assert self._cgroups is not None
        try:
            cgroup = await asyncio.to_thread(self._make_cgroup, self._cgroups, f"{SPARE_CGROUP_PREFIX}{pid}", pid)
        except ProcessGone:  # it died
            return False
        except CgroupError as error:
            log.warning("a spare runner has no cgroup yet (its launch makes one): %s", error)
            return False
        self._spare_cgroups[pid] = cgroup
        return True

    def _make_cgroup(
        self, cgroups: RunnerCgroups, name: str, pid: int, memory_limit_mb: int | None = None
    ) -> RunnerCgroup:
        memory_limit_mb = memory_limit_mb or self._settings.local_memory_limit_mb
        cgroup = cgroups.make(name, memory_limit_mb * 1024 * 1024, self._cgroup_processes())
        try:
            cgroup.join_tree(pid)
        except CgroupError:
            self._remove_cgroups([cgroup])
            raise
        return cgroup

    def _enter_cgroup(self, cgroups: RunnerCgroups, spec: LaunchSpec, pid: int) -> None:
        """Give the launched runner `pid` its cgroup: its spare's, renamed after the execution and with the
        workflow's limits, or one made now. A runner that cannot have one is killed: it would run unlimited."""
        memory_limit_mb = self._memory_limit_mb(spec)
        cgroup = self._spare_cgroups.pop(pid, None)
        try:
            if cgroup is None:  # it waits for its claim until told it is in its cgroup
                cgroup = self._make_cgroup(cgroups, spec.execution_id, pid, memory_limit_mb)
                if self._template is not None:
                    self._template.moved(pid)
            else:
                cgroup = cgroup.rename(spec.execution_id)
                if memory_limit_mb != self._settings.local_memory_limit_mb:
                    cgroup.set_limits(memory_limit_mb * 1024 * 1024, self._cgroup_processes())
        except ProcessGone:
            # A runner that ran to its end before it could be moved has nothing left to limit: its end is
            # reported as any runner's is.
            return
        except CgroupError as error:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            if cgroup is not None:
                self._spawn(asyncio.to_thread(self._remove_cgroups, [cgroup]))
            raise LaunchError(f"the runner could not be given its cgroup: {error}") from error

    @staticmethod
    def _remove_cgroups(cgroups: list[RunnerCgroup]) -> None:
        for cgroup in cgroups:
            try:
                cgroup.remove()
            except CgroupError as error:
                log.error("a runner's cgroup could not be removed: %s", error)

    def _runner_environment(self) -> dict[str, str]:
        env = basic_environment()
        if self._sandbox is not None:  # each run has a temporary folder of its own, and there are no home folders
            env |= {"TMPDIR": SANDBOX_TMP, "HOME": SANDBOX_TMP}
        return env

    def _runner_specific_environment(self, spec: LaunchSpec) -> dict[str, str]:
        env = self._runner_environment() | spec.runner_env()
        if self._sandbox is not None:  # the one cache the template makes read-only to every workflow
            env["BIFROST_WORKSPACE_CACHE_DIR"] = str(runner_cache_dir(self._settings))
        return env

    async def _ready_template(self) -> RunnerTemplate:
        try:
            await asyncio.wait_for(self._template_ready.wait(), TEMPLATE_WAIT_SECONDS)
        except TimeoutError:
            raise LaunchError(f"the runner template is not running after {TEMPLATE_WAIT_SECONDS:.0f} s") from None
        assert self._template is not None
        return self._template

    def _adopt(self, runner: _Runner, kill_at: float | None, timeout_seconds: int | None) -> None:
        self._runners[runner.execution_id] = runner
        if kill_at is not None:
            note = (
                f"after exceeding its timeout of {timeout_seconds} s"
                if timeout_seconds is not None
                else "after exceeding its timeout"
            )
            delay = max(0.0, kill_at - time.time())
            runner.backstop = asyncio.get_running_loop().call_later(delay, self._timeout_backstop, runner, note)

    def _timeout_backstop(self, runner: _Runner, note: str) -> None:
        if self._runners.get(runner.execution_id) is runner:
            runner.kill_note = note
            runner.timed_out = True
            self._signal(runner, signal.SIGKILL)

    async def _kill_after_grace(self, runner: _Runner) -> None:
        await asyncio.sleep(KILL_GRACE_SECONDS)
        if self._runners.get(runner.execution_id) is runner:
            self._signal(runner, signal.SIGKILL)

    @staticmethod
    def _signal(runner: _Runner, signum: int) -> None:
        """Signal the runner's whole session (the workflow's own subprocesses too) if it is still that process."""
        if is_same_process(runner.pid, runner.start_time):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(runner.pid, signum)

    async def _watch(self, runner: _Runner, note: str) -> None:
        """Wait for a runner that is not (or no longer) the template's child to end; its exit status is lost."""
        try:
            pidfd = os.pidfd_open(runner.pid)
        except ProcessLookupError:
            pidfd = None
        if pidfd is not None:
            loop = asyncio.get_running_loop()
            try:
                # Checked after opening the pidfd: it then surely refers to the runner, not a reused pid.
                if is_same_process(runner.pid, runner.start_time):
                    exited = asyncio.Event()
                    loop.add_reader(pidfd, exited.set)
                    await exited.wait()
            finally:
                loop.remove_reader(pidfd)
                os.close(pidfd)
        self._finish(runner, None, self._out_of_memory(runner) or f"{exit_reason(None, None)} {note}")

    def _out_of_memory(self, runner: _Runner) -> str | None:
        """The reason a runner that ended failing did, when its cgroup's OOM killer ended it (or a process it
        needed): the signal it died of says nothing more."""
        if self._cgroups is None or not self._cgroups.get(runner.execution_id).memory_limit_reached():
            return None
        if runner.memory_limit_mb is None:  # adopted from an earlier control plane
            return "memory limit reached"
        return f"memory limit of {runner.memory_limit_mb} MB reached"

    def _runner_ended(self, ended: RunnerEnded) -> None:
        runner = self._runners.get(ended.execution_id)
        if runner is None or runner.pid != ended.pid:
            if ended.execution_id in self._launching:
                self._ended_while_launching[ended.execution_id] = ended
            return
        # A runner that reported how the execution ended has nothing to add from its log.
        failed = ended.exit_code != 0 and reported_status(ended.exit_code) is None
        reason = self._out_of_memory(runner) if failed else None
        if reason is None:
            at_limit = runner.memory_limit_mb if ended.memory_limit_reached and failed else None
            reason = exit_reason(ended.exit_code, ended.signal, runner.kill_note, at_limit)
        self._finish(runner, ended.exit_code, reason, failed=failed)

    def _finish(self, runner: _Runner, exit_code: int | None, reason: str, failed: bool = False) -> None:
        if self._runners.get(runner.execution_id) is not runner:
            return
        del self._runners[runner.execution_id]
        if runner.backstop:
            runner.backstop.cancel()
        if runner.watch and runner.watch is not asyncio.current_task():
            runner.watch.cancel()
        status = ExecutionStatus.TIMEOUT if runner.timed_out else None
        self._finish_record(runner.execution_id, exit_code, reason, status=status, with_log_tail=failed)

    def _finish_record(
        self,
        execution_id: str,
        exit_code: int | None,
        reason: str,
        status: ExecutionStatus | None = None,
        with_log_tail: bool = False,
    ) -> None:
        """Record how the runner ended, then report it. The files are written off the event loop, which is busy
        finishing the runner's execution at this very moment."""

        async def record_and_report() -> None:
            log_tail = await asyncio.to_thread(self._record_end, execution_id, exit_code, reason, with_log_tail)
            runner_exit = RunnerExit(
                execution_id=execution_id, exit_code=exit_code, reason=reason, status=status, log_tail=log_tail
            )
            await self._call_on_exit(runner_exit)

        self._spawn(record_and_report())

    def _record_end(self, execution_id: str, exit_code: int | None, reason: str, with_log_tail: bool) -> str | None:
        record = self._records.read(execution_id) or RunnerRecord(execution_id=execution_id)
        self._records.write(record.model_copy(update={"exit_code": exit_code, "reason": reason}))
        if self._cgroups is not None:  # with whatever the run left behind
            self._remove_cgroups([self._cgroups.get(execution_id)])
        if self._sandbox is not None:  # what the run left in its /tmp and /dev/shm: no process of it is left
            remove_tree(runner_tmp_dir(self._settings) / execution_id)
        return self._records.log_tail(execution_id, LOG_TAIL_LINES) if with_log_tail else None

    def _remove_run_folders(self) -> None:
        """Of the runs' folders in the sandbox's temporary folder, keep those of runs that may still be running
        (started by an earlier control-plane process, not recorded as ended); the rest is what ended runs, and
        spares of earlier templates, left."""
        for entry in runner_tmp_dir(self._settings).iterdir():
            try:
                record = self._records.read(entry.name) if entry.is_dir() else None
            except ValueError:  # no execution's name
                record = None
            if record is None or record.ended:
                remove_tree(entry)

    def _report(self, runner_exit: RunnerExit) -> None:
        self._spawn(self._call_on_exit(runner_exit))

    async def _call_on_exit(self, runner_exit: RunnerExit) -> None:
        try:
            await self._on_exit(runner_exit)
        except Exception:
            log.exception("on_exit failed for execution %s", runner_exit.execution_id)

    async def _start_template(self) -> None:
        template = RunnerTemplate(
            self._settings.local_pool_size,
            self._runner_environment(),
            self._runner_ended,
            self._template_gone,
            sandbox=self._sandbox,
            # Each runner confined to namespaces of its own, and a user (or else a user namespace) of its own.
            options=template_options(self._settings, self._records.folder) if self._sandbox is not None else (),
            on_fork_made=self._fork_made if self._cgroups is not None else None,
            on_slot_dropped=self._slot_gone,
        )
        await template.start()
        self._template = template
        self._slots_out.clear()
        self._ready_slots.clear()
        self._reserved.clear()
        self._template_ready.set()
        for _ in range(self._settings.local_pool_size):
            self._offer_slot()

    def _template_gone(self) -> None:
        """The template died: watch its runners by pid from now on, and start a new template."""
        self._template_ready.clear()
        for runner in self._runners.values():
            if runner.watch is None:
                runner.watch = self._spawn(self._watch(runner, "(the runner template that started it had died)"))
        if not self._stopping:
            log.warning("the local runner template exited; restarting it")
            self._spawn(self._restart_template())
        self._spawn(self._remove_spare_cgroups(list(self._spare_cgroups)))

    async def _remove_spare_cgroups(self, pids: list[int]) -> None:
        """Remove the cgroups of the forks `pids` of a template gone, with the spares among them: once a moment
        has passed, launches that took one of them have done so."""
        await asyncio.sleep(TEMPLATE_RESTART_DELAY_SECONDS)
        cgroups = [cgroup for pid in pids if (cgroup := self._spare_cgroups.pop(pid, None)) is not None]
        await asyncio.to_thread(self._remove_cgroups, cgroups)

    async def _restart_template(self) -> None:
        while not self._stopping:
            await asyncio.sleep(TEMPLATE_RESTART_DELAY_SECONDS)
            try:
                await self._start_template()
                return
            except OSError:
                log.exception("could not restart the local runner template")

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task
