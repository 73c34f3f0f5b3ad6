"""The local backend's runner template: a `python -m bifrost_runner.zygote` child process that forks one
single-use runner per claim. This module starts it (in the runners' sandbox, see `local_sandbox`) and speaks its
JSON-lines protocol."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence

from pydantic import ValidationError

from bifrost._internal.protocol import (
    ForkMade,
    RunnerClaim,
    RunnerEnded,
    RunnerForked,
    RunnerForkFailed,
    RunnerSlot,
    SlotDropped,
    TemplateStarted,
    claim_line,
    fork_moved_line,
    slot_line,
    template_message_adapter,
)
from control_plane.backends.local_sandbox import host_pid

UNSEEN = 0
"""The pid of a sandboxed runner that ended before its pid outside the sandbox was found."""


class LaunchError(RuntimeError):
    """The template could not start a runner."""


class TemplateGoneError(LaunchError):
    """The template exited before it started the runner; the claim never reached a runner."""


class RunnerTemplate:
    def __init__(
        self,
        spares: int,
        env: dict[str, str],
        on_ended: Callable[[RunnerEnded], None],
        on_gone: Callable[[], None],
        sandbox: list[str] | None = None,
        options: Sequence[str] = (),
        on_fork_made: Callable[[int], Awaitable[bool]] | None = None,
        on_slot_dropped: Callable[[str], None] | None = None,
    ) -> None:
        """`sandbox`: the command line the template runs in (see `local_sandbox`); None: none. `options`: the
        template's options for its runners (users or user namespaces of their own, confinement; see
        `bifrost_runner.zygote`). `on_fork_made`: awaited with the pid here of each fork the template makes, before
        any later message is read; so before the fork's claim is reported, when it is a spare. It moves the fork
        into a cgroup of its own and returns whether it did: the template hands a fork its claim only once it has,
        or once `moved` was called for it. `on_slot_dropped`:
        told of each slot given (`give_slot`) that no runner will hold, though no claim came for it."""
        self._on_slot_dropped = on_slot_dropped
        self._spares = spares
        self._env = env
        self._on_ended = on_ended
        self._on_gone = on_gone
        self._sandbox = sandbox
        self._options = list(options)
        self._on_fork_made = on_fork_made
        self._forking: dict[str, asyncio.Future[int]] = {}
        self._host_pids: dict[int, int] = {}
        """In a sandbox: the pid here of each running runner, by its pid in the sandbox."""
        self._closing = False

    async def start(self) -> None:
        # The protocol goes over pipes of its own, not the template's stdin and stdout: a sandbox's outer process
        # keeps those open, and the template's end must be seen when the template exits.
        claims_read, claims_write = os.pipe()
        messages_read, messages_write = os.pipe()
        passed, kept = [claims_read, messages_write], [claims_write, messages_read]
        # `-s`: no user site-packages, which would be read from HOME, a folder runners write in the sandbox.
        command = [
            sys.executable, "-s", "-m", "bifrost_runner.zygote",
            "--spares", str(self._spares),
            "--protocol-fds", f"{claims_read},{messages_write}",
            *(["--claims-once-moved"] if self._on_fork_made is not None else []),
            *self._options,
        ]  # fmt: skip
        if self._sandbox is not None:
            info_read, info_write = os.pipe()
            passed.append(info_write)
            kept.append(info_read)
            command = [*self._sandbox, "--info-fd", str(info_write), *command]
        try:
            self._process = await asyncio.create_subprocess_exec(
                *command, stdin=asyncio.subprocess.DEVNULL, env=self._env, pass_fds=passed
            )
        except OSError:
            for fd in kept:
                os.close(fd)
            raise
        finally:
            for fd in passed:
                os.close(fd)
        loop = asyncio.get_running_loop()
        self._messages = asyncio.StreamReader()
        await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(self._messages), os.fdopen(messages_read, "rb", buffering=0)
        )
        transport, protocol = await loop.connect_write_pipe(
            asyncio.streams.FlowControlMixin, os.fdopen(claims_write, "wb", buffering=0)
        )
        self._claims = asyncio.StreamWriter(transport, protocol, None, loop)
        try:
            self._pid = await self._started(info_read if self._sandbox is not None else None)
        except OSError:
            self._claims.close()
            await self._release_sandbox()
            raise
        self._reader = asyncio.create_task(self._read())

    async def _started(self, info_fd: int | None) -> int:
        """The template's pid here, once it has started. In a sandbox, the template is the child of the sandbox's
        first process (which stays as its init)."""
        if info_fd is not None:
            with os.fdopen(info_fd, "rb") as info:
                init_pid = int(json.loads(await asyncio.to_thread(info.read) or b"{}").get("child-pid", 0))
        line = await self._messages.readline()
        try:
            started = template_message_adapter.validate_json(line) if line else None
        except ValidationError:
            started = None
        if not isinstance(started, TemplateStarted):
            raise OSError(f"the runner template did not start (it said {line[:200]!r})")
        if info_fd is None:
            return self._process.pid
        pid = await asyncio.to_thread(host_pid, init_pid, started.pid)
        if pid is None:
            raise OSError("the runner template ended as it started")
        return pid

    @property
    def pid(self) -> int:
        return self._pid

    def give_slot(self, slot: RunnerSlot) -> None:
        """Have a spare wait with `slot` (see `RunnerSlot`); the template retires it in time."""
        self._tell(slot_line(slot))

    def moved(self, pid: int) -> None:
        """Tell the template that its runner `pid` (here), which `on_fork_made` did not move, is in its cgroup now."""
        if self._sandbox is None:
            inner: int | None = pid
        else:
            inner = next((inner for inner, host in self._host_pids.items() if host == pid), None)
        if inner is not None:
            self._tell(fork_moved_line(inner))

    def _tell(self, line: bytes) -> None:
        """Write `line` to the template, unless it is gone or being stopped: then what it is told matters no more."""
        if not self._reader.done() and not self._claims.is_closing():
            self._claims.write(line)

    async def fork(self, claim: RunnerClaim) -> int:
        """Start the runner of `claim` (on the spare holding its slot, if one does); its pid."""
        if self._reader.done() or self._claims.is_closing():
            raise TemplateGoneError("the runner template is not running")
        forked: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._forking[claim.execution_id] = forked
        try:
            self._claims.write(claim_line(claim))
            await self._claims.drain()
            return await forked
        except ConnectionError as exc:
            raise TemplateGoneError(f"the runner template is gone: {exc}") from exc
        finally:
            self._forking.pop(claim.execution_id, None)

    async def close(self) -> None:
        """Stop the template; runners it started keep running."""
        self._closing = True
        self._claims.close()
        try:
            await asyncio.wait_for(asyncio.shield(self._reader), timeout=5)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._pid, signal.SIGKILL)
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader

    async def _release_sandbox(self) -> None:
        """Once the template is gone: its sandbox's outer process stays until the last runner in it ends; it is
        of no further use, and ending it does not end the sandbox."""
        if self._sandbox is not None:
            with contextlib.suppress(ProcessLookupError):
                self._process.kill()
        await self._process.wait()

    async def _host_pid(self, pid: int) -> int:
        """The pid here of the runner with pid `pid` in the template's sandbox: found when its fork was made, as a
        runner of a trivial workflow may be gone by the time its `RunnerForked` is read. `UNSEEN` for a runner
        that ran to its end before it could be found (its `RunnerEnded` carries `UNSEEN` too)."""
        if self._sandbox is None:
            return pid
        found = self._host_pids.get(pid) or await asyncio.to_thread(host_pid, self._pid, pid)
        if found is None:
            return UNSEEN
        self._host_pids[pid] = found
        return found

    async def _read(self) -> None:
        while line := await self._messages.readline():
            message = template_message_adapter.validate_json(line)
            if isinstance(message, RunnerEnded):
                if self._sandbox is not None:
                    message.pid = self._host_pids.pop(message.pid, UNSEEN)
                self._on_ended(message)
                continue
            if isinstance(message, TemplateStarted):
                continue
            if isinstance(message, SlotDropped):
                if self._on_slot_dropped is not None:
                    self._on_slot_dropped(message.execution_id)
                continue
            if isinstance(message, ForkMade):
                found: int | None = message.pid
                if self._sandbox is not None:
                    # A look through /proc: off the event loop, which the messages after this one wait for.
                    found = await asyncio.to_thread(host_pid, self._pid, message.pid)
                    if found is None:  # gone already: no entry of an earlier fork with this pid may stand for it
                        self._host_pids.pop(message.pid, None)
                    else:
                        self._host_pids[message.pid] = found
                if found is not None and self._on_fork_made is not None and await self._on_fork_made(found):
                    self._tell(fork_moved_line(message.pid))
                continue
            forked = self._forking.get(message.execution_id)
            if forked is None or forked.done():
                continue
            if isinstance(message, RunnerForked):
                pid = await self._host_pid(message.pid)
                if not forked.done():
                    forked.set_result(pid)
            elif isinstance(message, RunnerForkFailed):
                forked.set_exception(LaunchError(message.error))
        for forked in self._forking.values():
            if not forked.done():
                forked.set_exception(TemplateGoneError("the runner template exited before starting the runner"))
        await self._release_sandbox()
        if not self._closing:
            self._on_gone()
