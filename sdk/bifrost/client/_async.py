"""The asynchronous client: what `Client` does, awaited."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

import httpx

from bifrost.api.executions import ExecutionOut, ExecutionStatus
from bifrost.client import _calls as calls
from bifrost.client._base import Attempts, ClientBase, Follower
from bifrost.client._stream import StreamEvent
from bifrost.client.errors import ExecutionFailedError

P = ParamSpec("P")
T = TypeVar("T")


class AsyncClient(ClientBase[httpx.AsyncClient]):
    """Bifrost's HTTP API for asyncio: the methods of `Client`, awaited (`follow` is an async iterator).

    async with AsyncClient("https://bifrost.example.com", api_key) as bifrost:
        execution = await bifrost.run("create_user", {"email": "a@example.com"}, check=True)
    """

    def _open(self, *, base_url: str, headers: dict[str, str], timeout: httpx.Timeout) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=base_url, headers=headers, timeout=timeout)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self.aclose()

    async def send(self, call: calls.Call[T]) -> T:
        """Send one call, retrying as the client's `Retry` says."""
        attempts = Attempts(self._settings, idempotent=call.idempotent)
        while True:
            try:
                response = await self._http.request(
                    call.method, call.path, params=call.params, json=call.json, content=call.content
                )
            except httpx.TransportError as exc:
                await asyncio.sleep(attempts.broke(exc))
                continue
            pause = attempts.pause(call, response)
            if pause is None:
                return call.answer(response)
            await asyncio.sleep(pause)

    def _method(self, build: Callable[P, calls.Call[T]]) -> Callable[P, Awaitable[T]]:
        """The method of an endpoint: it sends the call `build` makes, awaited."""

        @functools.wraps(build)
        async def send(*args: P.args, **kwargs: P.kwargs) -> T:
            return await self.send(build(*args, **kwargs))

        return send

    async def run(self, name: str, parameters: dict[str, Any] | None = None, *, check: bool = False) -> ExecutionOut:
        """Start a workflow and wait until it finishes; the finished execution. `check`: raise
        `ExecutionFailedError` unless it succeeded. To wait only so long, wrap it in `asyncio.timeout`."""
        started = await self.execute(name, parameters)
        execution = started if isinstance(started, ExecutionOut) else await self.wait(started.execution_id)
        if check and execution.status is not ExecutionStatus.SUCCESS:
            raise ExecutionFailedError(execution)
        return execution

    async def follow(self, execution_id: str, *, after_line: int = 0) -> AsyncIterator[StreamEvent]:
        """The execution's events as they happen, as `Client.follow` gives them. To wait only so long, wrap the
        loop in `asyncio.timeout`."""
        follower = Follower(self._http, self._settings, execution_id, after_line)
        while True:
            try:
                response = await self._http.send(follower.request(), stream=True)
            except httpx.TransportError as exc:
                await asyncio.sleep(follower.broke(exc))
                continue
            try:
                if response.status_code != 200:
                    await response.aread()
                    await asyncio.sleep(follower.refused(response))
                    continue
                async for line in response.aiter_lines():
                    for event in follower.feed(line):
                        yield event
                        if event.is_final:
                            return
            except httpx.TransportError as exc:
                await asyncio.sleep(follower.broke(exc))
            finally:
                await response.aclose()

    async def wait(self, execution_id: str) -> ExecutionOut:
        """The execution once it has finished. To wait only so long, wrap it in `asyncio.timeout`."""
        execution = await self.get_execution(execution_id)
        if not execution.status.is_terminal:
            async for event in self.follow(execution_id, after_line=execution.log_count):
                if event.is_final:
                    break
            execution = await self.get_execution(execution_id)
        return execution
