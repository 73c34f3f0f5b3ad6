"""The local backend's runner template: a `python -m bifrost_runner.zygote` child process that forks one
single-use runner per claim. This module starts it and speaks its JSON-lines protocol."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Callable

from bifrost.protocol import RunnerClaim, RunnerEnded, RunnerForked, RunnerForkFailed, template_message_adapter


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
    ) -> None:
        self._spares = spares
        self._env = env
        self._on_ended = on_ended
        self._on_gone = on_gone
        self._forking: dict[str, asyncio.Future[int]] = {}
        self._closing = False

    async def start(self) -> None:
        self._process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bifrost_runner.zygote",
            "--spares",
            str(self._spares),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=self._env,
        )
        self._reader = asyncio.create_task(self._read())

    @property
    def pid(self) -> int:
        return self._process.pid

    async def fork(self, claim: RunnerClaim) -> int:
        """Start the runner of `claim`; its pid."""
        assert self._process.stdin is not None
        if self._reader.done():
            raise TemplateGoneError("the runner template is not running")
        forked: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._forking[claim.execution_id] = forked
        try:
            self._process.stdin.write(claim.model_dump_json().encode() + b"\n")
            await self._process.stdin.drain()
            return await forked
        except ConnectionError as exc:
            raise TemplateGoneError(f"the runner template is gone: {exc}") from exc
        finally:
            self._forking.pop(claim.execution_id, None)

    async def close(self) -> None:
        """Stop the template; runners it started keep running."""
        self._closing = True
        assert self._process.stdin is not None
        self._process.stdin.close()
        try:
            await asyncio.wait_for(self._process.wait(), timeout=5)
        except TimeoutError:
            self._process.kill()
            await self._process.wait()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader

    async def _read(self) -> None:
        assert self._process.stdout is not None
        while line := await self._process.stdout.readline():
            message = template_message_adapter.validate_json(line)
            if isinstance(message, RunnerEnded):
                self._on_ended(message)
                continue
            forked = self._forking.get(message.execution_id)
            if forked is None or forked.done():
                continue
            if isinstance(message, RunnerForked):
                forked.set_result(message.pid)
            elif isinstance(message, RunnerForkFailed):
                forked.set_exception(LaunchError(message.error))
        for forked in self._forking.values():
            if not forked.done():
                forked.set_exception(TemplateGoneError("the runner template exited before starting the runner"))
        if not self._closing:
            self._on_gone()
