"""The `podman` and `docker` backends: a fresh container per execution from the runner image, removed when it ends.

The same code drives both CLIs. Launch is `run --detach` under a name derived from the execution id, so a second
launch finds the first one's container. One stream of the engine's events (`events`, filtered on this installation's
label) tells the end of every container, however it ends; the backend then reads the container's final state, the
end of its log when it failed, removes it and reports. A container still running past its deadline (the workflow's
timeout plus a grace period) is stopped. After a restart, the labels say which container runs which execution and
when its deadline passes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bifrost._internal.protocol import ExecutionStatus
from control_plane.backends.base import (
    ClaimChannel,
    ExitCallback,
    LaunchSpec,
    RunEnd,
    RunnerDetails,
    RunnerExit,
    diagnosed_exit,
)
from control_plane.backends.container_cli import ContainerCli, ContainerCliError
from control_plane.backends.container_diagnosis import (
    Diagnosis,
    StopCause,
    container_removed,
    container_vanished,
    diagnose_end,
    diagnose_launch_failure,
)
from control_plane.backends.container_spec import (
    DEADLINE,
    EXECUTION_ID,
    container_name,
    inspect_commands,
    instance_of,
    instance_selector,
    run_arguments,
    runner_env,
)
from control_plane.security.key_files import make_private_folder
from control_plane.settings import Settings

logger = logging.getLogger(__name__)

STOP_GRACE_SECONDS = 3.0
"""When the backend stops a container, how long the runner has after SIGTERM before SIGKILL."""
LOG_TAIL_LINES = 50
"""Of a runner that failed, this many of its last output lines go with its exit report."""
ORPHAN_MIN_AGE_SECONDS = 120.0
"""Running containers of no active execution younger than this are left alone by `reconcile`: another replica may
have launched them after our list of active executions was taken."""
EVENTS_RETRY_FIRST_SECONDS = 0.2
EVENTS_RETRY_MAX_SECONDS = 10.0
_SETTLE_ATTEMPTS = 10
"""How many times a container reported dead but still described as running is read again (0.1 s apart)."""


@dataclass
class _Run:
    """What the backend knows of one container it launched or re-attached."""

    execution_id: str
    name: str
    deadline: float
    """Unix time."""
    created: bool = False
    """`run` returned: the container exists (or existed)."""
    stopped: StopCause | None = None
    timer: asyncio.TimerHandle | None = None


class ContainerBackend:
    def __init__(self, settings: Settings) -> None:
        if settings.backend not in ("podman", "docker"):
            raise ValueError(f"the container backend runs podman or docker, not {settings.backend!r}")
        self.name: str = settings.backend
        self._settings = settings
        self._cli = ContainerCli(settings.backend, settings.data_dir.resolve() / "containers")
        self._instance = instance_of(settings)
        self._selector = instance_selector(self._instance)
        self._runs: dict[str, _Run] = {}
        """By container name."""
        self._tasks: set[asyncio.Task[None]] = set()
        self._events: asyncio.Task[None] | None = None
        self._on_exit: ExitCallback | None = None

    async def start(self, on_exit: ExitCallback, claims: ClaimChannel | None = None) -> None:
        """`claims` is of no use here: no runner of this backend waits for a claim over NATS."""
        self._cli.check_available()
        make_private_folder(self._cli.workdir)
        self._on_exit = on_exit
        following = asyncio.Event()
        self._events = asyncio.create_task(self._follow_events(following))
        await following.wait()

    async def stop(self) -> None:
        if self._events is not None:
            self._events.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._events
        for run in self._runs.values():
            if run.timer is not None:
                run.timer.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=10)

    async def launch(self, spec: LaunchSpec) -> None:
        name = container_name(spec.execution_id)
        if name in self._runs:
            return
        deadline = time.time() + spec.timeout_seconds + self._settings.container_deadline_grace_seconds
        run = self._runs[name] = _Run(spec.execution_id, name, deadline)
        try:
            await self._cli.call(*run_arguments(spec, self._settings, self._instance, deadline), env=runner_env(spec))
        except ContainerCliError as exc:
            if "already in use" in exc.stderr:
                # Launched before (a redelivered launch, or one an earlier control plane made): followed from now on.
                await self._adopt(run)
                return
            await self._launch_failed(run, exc)
            return
        except BaseException:
            self._forget(run)
            raise
        run.created = True
        if self._runs.get(name) is run:
            self._arm(run)

    async def kill(self, execution_id: str) -> None:
        name = container_name(execution_id)
        run = self._runs.get(name)
        if run is None:
            self._spawn(self._remove(name))
            return
        run.stopped = run.stopped or StopCause.CANCELLED
        self._spawn(self._stop(run))

    def runner_ref(self, execution_id: str) -> str:
        """The container's name."""
        return container_name(execution_id)

    def details(self, execution_id: str) -> RunnerDetails:
        return RunnerDetails(commands=inspect_commands(self.name, execution_id))

    async def run_ended(self, end: RunEnd) -> None:
        """A container's labels cannot change: its status stays in the database."""

    async def reconcile(self, active_execution_ids: list[str]) -> None:
        """Follow again the containers of still-active executions; report those whose container is gone or ended;
        remove the containers of executions that are over."""
        containers = {
            _label(container, EXECUTION_ID): container for container in await self._cli.containers(self._selector)
        }
        for execution_id in active_execution_ids:
            name = container_name(execution_id)
            if name in self._runs:
                continue
            container = containers.get(execution_id)
            if container is None:
                await self._report(diagnosed_exit(execution_id, container_vanished(name)))
                continue
            run = self._runs[name] = _Run(execution_id, name, _deadline(container), created=True)
            if _running(container):
                self._arm(run)
            else:
                self._conclude(run)
        active = set(active_execution_ids)
        for owner, container in containers.items():
            if owner in active:
                continue
            if not _running(container) or _age_seconds(container) > ORPHAN_MIN_AGE_SECONDS:
                await self._remove(str(container.get("Id")))

    async def _adopt(self, run: _Run) -> None:
        container = await self._cli.inspect(run.name)
        run.created = True
        if container is None:
            # Removed between our `run` and now: what ended it is unknown.
            self._conclude(run)
            return
        run.deadline = _deadline(container)
        if _running(container):
            self._arm(run)
        else:
            self._conclude(run)

    async def _launch_failed(self, run: _Run, error: ContainerCliError) -> None:
        diagnosis = diagnose_launch_failure(
            self.name,
            run.name,
            self._settings.runner_image,
            self._settings.runner_image_pull_policy,
            error.returncode,
            error.stderr,
        )
        ours = self._forget(run)
        # A container created but not started stays behind; nothing else is left of a failed `run`.
        await self._remove(run.name)
        if diagnosis is None:
            raise error
        if ours:
            self._spawn(self._report(diagnosed_exit(run.execution_id, diagnosis)))

    def _forget(self, run: _Run) -> bool:
        """Stop tracking `run`; whether it was still tracked (its end not reported yet)."""
        if self._runs.get(run.name) is not run:
            return False
        del self._runs[run.name]
        if run.timer is not None:
            run.timer.cancel()
        return True

    def _arm(self, run: _Run) -> None:
        """Stop the container at its deadline."""
        delay = max(0.0, run.deadline - time.time())
        run.timer = asyncio.get_running_loop().call_later(delay, self._deadline_passed, run)

    def _deadline_passed(self, run: _Run) -> None:
        if self._runs.get(run.name) is not run:
            return
        run.stopped = run.stopped or StopCause.DEADLINE
        self._spawn(self._stop(run))

    async def _stop(self, run: _Run) -> None:
        try:
            await self._cli.stop(run.name, STOP_GRACE_SECONDS)
        except ContainerCliError as exc:
            logger.error("could not stop the runner container %s: %s", run.name, exc)

    async def _remove(self, name: str) -> None:
        try:
            await self._cli.remove(name)
        except ContainerCliError as exc:
            logger.error("could not remove the runner container %s: %s", name, exc)

    async def _follow_events(self, following: asyncio.Event) -> None:
        """The one stream of container ends, followed again after it breaks; the containers that ended while it was
        broken are found by reading the state of every tracked one once it follows again."""
        backoff = EVENTS_RETRY_FIRST_SECONDS
        while True:
            try:
                # From a second back: the CLI may take that long to follow, and an end seen twice is reported once.
                async with self._cli.died_events(self._selector, time.time() - 1) as died:
                    if following.is_set():
                        self._spawn(self._sweep())
                    following.set()
                    async for name in died:
                        backoff = EVENTS_RETRY_FIRST_SECONDS
                        run = self._runs.get(name)
                        if run is not None:
                            self._conclude(run)
            except (ContainerCliError, OSError) as exc:
                logger.warning("following %s events failed (%s); trying again in %.1fs", self.name, exc, backoff)
            following.set()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, EVENTS_RETRY_MAX_SECONDS)

    async def _sweep(self) -> None:
        for run in list(self._runs.values()):
            if not run.created:
                continue
            try:
                container = await self._cli.inspect(run.name)
            except ContainerCliError as exc:
                logger.warning("could not read the state of runner container %s: %s", run.name, exc)
                continue
            if container is None or not _running(container):
                self._conclude(run)

    def _conclude(self, run: _Run) -> None:
        """Report the end of `run` exactly once: it leaves the tracked runs here, synchronously."""
        if self._forget(run):
            self._spawn(self._finish(run))

    async def _finish(self, run: _Run) -> None:
        try:
            container = await self._settled(run.name)
        except ContainerCliError as exc:
            diagnosis = Diagnosis(
                f"The runner container {run.name} ended, and {self.name} could not tell how: {exc}",
                None if run.stopped is StopCause.CANCELLED else ExecutionStatus.FAILED,
            )
        else:
            diagnosis = (
                container_removed(run.name)
                if container is None
                else diagnose_end(self.name, container, run.name, run.stopped)
            )
        log_tail = await self._log_tail(run.name) if diagnosis.ran else None
        await self._remove(run.name)
        await self._report(diagnosed_exit(run.execution_id, diagnosis, log_tail))

    async def _log_tail(self, name: str) -> str | None:
        try:
            return await self._cli.log_tail(name, LOG_TAIL_LINES) or None
        except ContainerCliError as exc:
            logger.warning("could not read the log of runner container %s: %s", name, exc)
            return None

    async def _settled(self, name: str) -> dict[str, Any] | None:
        """The container as it ended; the engine may describe it as running for a moment after its end."""
        for _ in range(_SETTLE_ATTEMPTS):
            container = await self._cli.inspect(name)
            if container is None or not _running(container):
                return container
            await asyncio.sleep(0.1)
        return container

    async def _report(self, runner_exit: RunnerExit) -> None:
        if self._on_exit is None:
            raise RuntimeError("ContainerBackend.start() was not called")
        try:
            await self._on_exit(runner_exit)
        except Exception:
            logger.exception("reporting the end of execution %s failed", runner_exit.execution_id)

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


_FRACTION = re.compile(r"(\.\d{6})\d+")


def _label(container: dict[str, Any], name: str) -> str | None:
    labels = (container.get("Config") or {}).get("Labels") or {}
    value = labels.get(name)
    return str(value) if value is not None else None


def _running(container: dict[str, Any]) -> bool:
    return bool((container.get("State") or {}).get("Running"))


def _deadline(container: dict[str, Any]) -> float:
    """The container's deadline from its label; now, for a container of ours without one."""
    try:
        return float(_label(container, DEADLINE) or "")
    except ValueError:
        return time.time()


def _age_seconds(container: dict[str, Any]) -> float:
    created = str(container.get("Created") or "")
    try:
        moment = datetime.fromisoformat(_FRACTION.sub(r"\1", created.replace("Z", "+00:00")))
    except ValueError:
        return 0.0
    return time.time() - moment.timestamp()
