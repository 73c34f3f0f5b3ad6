"""The blocking client."""

from __future__ import annotations

import functools
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

import httpx

from bifrost.api.executions import ExecutionOut, ExecutionStatus
from bifrost.client import _calls as calls
from bifrost.client._base import Attempts, ClientBase, Follower
from bifrost.client._stream import StreamEvent
from bifrost.client.errors import ExecutionFailedError, WaitTimeoutError

P = ParamSpec("P")
T = TypeVar("T")


class Client(ClientBase[httpx.Client]):
    """Bifrost's HTTP API, blocking. Use it as a context manager, or `close()` it.

        with Client("https://bifrost.example.com", api_key) as bifrost:
            execution = bifrost.run("create_user", {"email": "a@example.com"}, check=True)

    `org`: the organization to act for (default: the key's). Requests are retried as `retry` says; a refusal
    raises the `ApiError` of its kind, with the server's message."""

    def _open(self, *, base_url: str, headers: dict[str, str], timeout: httpx.Timeout) -> httpx.Client:
        return httpx.Client(base_url=base_url, headers=headers, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def send(self, call: calls.Call[T]) -> T:
        """Send one call, retrying as the client's `Retry` says."""
        attempts = Attempts(self._settings, idempotent=call.idempotent)
        while True:
            try:
                response = self._http.request(
                    call.method, call.path, params=call.params, json=call.json, content=call.content
                )
            except httpx.TransportError as exc:
                time.sleep(attempts.broke(exc))
                continue
            pause = attempts.pause(call, response)
            if pause is None:
                return call.answer(response)
            time.sleep(pause)

    def _method(self, build: Callable[P, calls.Call[T]]) -> Callable[P, T]:
        """The method of an endpoint: it sends the call `build` makes."""

        @functools.wraps(build)
        def send(*args: P.args, **kwargs: P.kwargs) -> T:
            return self.send(build(*args, **kwargs))

        return send

    def run(
        self,
        name: str,
        parameters: dict[str, Any] | None = None,
        *,
        timeout: float | None = None,
        check: bool = False,
    ) -> ExecutionOut:
        """Start a workflow and wait until it finishes; the finished execution. `check`: raise
        `ExecutionFailedError` unless it succeeded. `WaitTimeoutError` after `timeout` seconds."""
        started = self.execute(name, parameters)
        execution = started if isinstance(started, ExecutionOut) else self.wait(started.execution_id, timeout=timeout)
        if check and execution.status is not ExecutionStatus.SUCCESS:
            raise ExecutionFailedError(execution)
        return execution

    def follow(self, execution_id: str, *, after_line: int = 0, timeout: float | None = None) -> Iterator[StreamEvent]:
        """The execution's events as they happen: the log lines after `after_line`, the variables, the result and
        the status changes, up to the final status. A dropped connection is resumed where it broke, without
        losing or repeating a line. `WaitTimeoutError` when the final status has not come after `timeout`
        seconds, even while the server sends nothing."""
        deadline = None if timeout is None else _Deadline(execution_id, timeout)
        return self._events(execution_id, after_line, deadline)

    def wait(self, execution_id: str, *, timeout: float | None = None) -> ExecutionOut:
        """The execution once it has finished. `WaitTimeoutError` when it has not after `timeout` seconds."""
        deadline = None if timeout is None else _Deadline(execution_id, timeout)
        execution = self.get_execution(execution_id)
        if not execution.status.is_terminal:
            for event in self._events(execution_id, execution.log_count, deadline):
                if event.is_final:
                    break
            execution = self.get_execution(execution_id)
        return execution

    def _events(self, execution_id: str, after_line: int, deadline: _Deadline | None) -> Iterator[StreamEvent]:
        follower = Follower(self._http, self._settings, execution_id, after_line)
        while True:
            request = follower.request(None if deadline is None else deadline.remaining())
            try:
                response = self._http.send(request, stream=True)
            except httpx.TransportError as exc:
                time.sleep(follower.broke(exc))
                continue
            try:
                if response.status_code != 200:
                    response.read()
                    time.sleep(follower.refused(response))
                    continue
                with _Deadline.guarding(deadline, response):
                    for line in response.iter_lines():
                        for event in follower.feed(line):
                            yield event
                            if event.is_final:
                                return
            except httpx.TransportError as exc:
                if deadline is not None:
                    deadline.check()
                time.sleep(follower.broke(exc))
            finally:
                response.close()
            # The server ended the stream before the final status (it does when a follower falls far behind):
            # resume after the last line.


class _Deadline:
    """When a wait ends: the requests made before it wait no longer than it, and a read of a stream that is
    blocked when it passes is ended then, by shutting down the socket it reads from."""

    def __init__(self, execution_id: str, seconds: float) -> None:
        self._execution_id = execution_id
        self._seconds = seconds
        self._at = time.monotonic() + seconds

    def remaining(self) -> float:
        self.check()
        return self._at - time.monotonic()

    def check(self) -> None:
        if time.monotonic() >= self._at:
            raise WaitTimeoutError(self._execution_id, self._seconds)

    @staticmethod
    @contextmanager
    def guarding(deadline: _Deadline | None, response: httpx.Response) -> Iterator[None]:
        """While the block reads `response`, a read still blocked at the deadline ends with a `TransportError`
        (a read timeout set when the request was sent would end it only that long after the read began)."""
        stream = response.extensions.get("network_stream")
        sock = None if stream is None or deadline is None else stream.get_extra_info("socket")
        if not isinstance(sock, socket.socket) or deadline is None:
            yield
            return
        timer = threading.Timer(max(deadline.remaining(), 0.0), _shut_down, (sock,))
        timer.daemon = True
        _start_deaf_to_ctrl_c(timer)
        try:
            yield
        finally:
            timer.cancel()


def _start_deaf_to_ctrl_c(thread: threading.Thread) -> None:
    """Start a thread that never takes SIGINT: the main thread, blocked reading, must get Ctrl-C at once."""
    if not hasattr(signal, "pthread_sigmask"):
        thread.start()
        return
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        thread.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def _shut_down(sock: socket.socket) -> None:
    with suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
