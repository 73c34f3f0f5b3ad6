"""The container engine's command line, `podman` or `docker` (or another CLI that speaks docker's), as
subprocesses of the control plane: what the container backend asks of the engine, in the subset both CLIs share.

The CLI finds its engine the usual way (podman's containers.conf and CONTAINERS_CONF, docker's DOCKER_HOST and
contexts), from the control plane's own environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shlex
import shutil
import tempfile
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

from control_plane.backends import BackendNotAvailableError

_NOT_FOUND_MARKERS = ("no such container", "no such object", "no container with name or id")
_DIED_EVENTS = frozenset({"died", "die"})
"""What podman and docker call the event of a container whose process ended."""


class ContainerCliError(RuntimeError):
    def __init__(self, command: list[str], returncode: int, stderr: str) -> None:
        self.returncode = returncode
        self.stderr = stderr.strip()
        super().__init__(f"`{shlex.join(command)}` failed with code {returncode}: {self.stderr}")

    @property
    def not_found(self) -> bool:
        return any(marker in self.stderr.lower() for marker in _NOT_FOUND_MARKERS)


class ContainerCli:
    def __init__(self, command: str, workdir: Path) -> None:
        self.command = command
        # Where the CLI runs: podman's container monitor (conmon) drops a file named `oom` into the folder it was
        # started from when a container runs out of memory.
        self.workdir = workdir

    def check_available(self) -> None:
        if shutil.which(self.command) is None:
            raise BackendNotAvailableError(
                f"BIFROST_BACKEND={self.command} runs executions in containers with the `{self.command}` command, "
                "which is not on PATH: install it, or choose another backend"
            )

    async def call(self, *args: str, env: Mapping[str, str] | None = None, merge_output: bool = False) -> str:
        """Run `<cli> args...`; its output. `env` is added to the control plane's environment for this call."""
        # Files, not pipes: the process podman leaves to watch a container it started holds on to the CLI's output,
        # so that pipes would stay open as long as the container runs.
        with tempfile.TemporaryFile() as stdout, tempfile.TemporaryFile() as stderr:
            process = await asyncio.create_subprocess_exec(
                self.command,
                *args,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=stdout,
                stderr=stdout if merge_output else stderr,
                cwd=self.workdir,
                env=None if env is None else {**os.environ, **env},
            )
            await process.wait()
            stdout.seek(0)
            stderr.seek(0)
            output, errors = stdout.read().decode(errors="replace"), stderr.read().decode(errors="replace")
        if process.returncode:
            raise ContainerCliError([self.command, *args], process.returncode, errors or output)
        return output

    async def inspect(self, name: str) -> dict[str, Any] | None:
        """The container `name` as the engine describes it; None when there is none."""
        try:
            found = json.loads(await self.call("container", "inspect", name))
        except ContainerCliError as exc:
            if exc.not_found:
                return None
            raise
        return dict(found[0]) if found else None

    async def containers(self, label_filter: str) -> list[dict[str, Any]]:
        """Every container (running or not) whose labels match `label_filter` (`label=key=value`), inspected."""
        ids = (await self.call("ps", "--all", "--quiet", "--no-trunc", f"--filter={label_filter}")).split()
        found = [await self.inspect(container_id) for container_id in ids]
        return [container for container in found if container is not None]

    async def log_tail(self, name: str, lines: int) -> str:
        """The last lines the container printed, its stdout and stderr together."""
        return await self.call("logs", f"--tail={lines}", name, merge_output=True)

    async def stop(self, name: str, grace_seconds: float) -> None:
        """SIGTERM, then SIGKILL after the grace period; nothing when the container is gone already."""
        try:
            await self.call("stop", f"--time={max(0, round(grace_seconds))}", name)
        except ContainerCliError as exc:
            if not exc.not_found:
                raise

    async def remove(self, name: str) -> None:
        """Remove the container, stopping it first if it runs; nothing when it is gone already."""
        try:
            await self.call("rm", "--force", name)
        except ContainerCliError as exc:
            if not exc.not_found:
                raise

    @contextlib.asynccontextmanager
    async def died_events(self, label_filter: str, since: float) -> AsyncIterator[AsyncIterator[str]]:
        """The names of the containers matching `label_filter` that die, from `since` (Unix time) on, as the engine
        reports them, until the CLI stops following."""
        process = await asyncio.create_subprocess_exec(
            self.command,
            "events",
            "--format={{json .}}",
            "--filter=type=container",
            f"--filter={label_filter}",
            f"--since={since:.3f}",
            stdin=asyncio.subprocess.DEVNULL,
            cwd=self.workdir,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert process.stdout is not None and process.stderr is not None
        stdout, stderr = process.stdout, process.stderr

        async def names() -> AsyncIterator[str]:
            async for line in stdout:
                name = _died_container(line)
                if name is not None:
                    yield name
            await process.wait()
            message = (await stderr.read()).decode(errors="replace").strip()
            raise ContainerCliError([self.command, "events"], process.returncode or 0, message or "it stopped")

        try:
            yield names()
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()


def _died_container(line: bytes) -> str | None:
    """The name of the container an event line tells died (podman: `Status: died`, docker: `Action: die`)."""
    try:
        event = json.loads(line)
    except ValueError:
        return None
    if not isinstance(event, dict):
        return None
    if (event.get("Status") or event.get("status") or event.get("Action")) not in _DIED_EVENTS:
        return None
    name = event.get("Name") or (event.get("Actor") or {}).get("Attributes", {}).get("name")
    return str(name) if name else None
