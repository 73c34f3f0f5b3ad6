"""A TCP proxy in front of a real server, as a load balancer stands there: it forwards every byte both ways, and
on request it answers 503 in the server's place, cuts an execution's event stream in the middle, or stalls one (as a
dead network does: the connection stays open and nothing more comes)."""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field

from bifrost_devtools.services import free_port

_STREAM_REQUEST = re.compile(rb"GET /api/executions/[^/ ]+/stream[^\r\n]*\r\n(.*?)\r\n\r\n", re.S)
_LAST_EVENT_ID = re.compile(rb"(?im)^last-event-id: *(\d+)")
_UNAVAILABLE = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\ncontent-length: 22\r\n"
    b"retry-after: 0\r\nconnection: close\r\n\r\nupstream not available"
)


@dataclass
class Proxy:
    port: int
    upstream_port: int
    unavailable: int = 0
    """Answer this many more new connections' first request with 503, without passing it on."""
    cut_streams: int = 0
    """Cut this many more execution streams, each after `cut_after_log_events` log events (`log`, or `logs` for a
    batch) went through."""
    cut_after_log_events: int = 3
    stall_streams: int = 0
    """Stall this many more execution streams, each after `stall_after_log_events` log events went through."""
    stall_after_log_events: int = 0
    stalled: int = 0
    """How many streams were stalled."""
    stream_resumed_after: list[int | None] = field(default_factory=list)
    """The Last-Event-ID of every stream request that went through (None: from the start)."""
    answered_unavailable: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _take(self, what: str) -> bool:
        with self._lock:
            if getattr(self, what) > 0:
                setattr(self, what, getattr(self, what) - 1)
                return True
            return False

    def serve(self, client: socket.socket) -> None:
        with client:
            first = client.recv(65536)
            if not first:
                return
            if self._take("unavailable"):
                with self._lock:
                    self.answered_unavailable += 1
                client.sendall(_UNAVAILABLE)
                return
            with socket.create_connection(("127.0.0.1", self.upstream_port)) as upstream:
                connection = _Connection(self, client, upstream)
                connection.to_server(first)
                threading.Thread(target=connection.pump_requests, daemon=True).start()
                connection.pump_responses()


class _Connection:
    def __init__(self, proxy: Proxy, client: socket.socket, upstream: socket.socket) -> None:
        self._proxy = proxy
        self._client = client
        self._upstream = upstream
        self._cutting = False
        self._stalling = False
        self._log_events = 0

    def to_server(self, data: bytes) -> None:
        for match in _STREAM_REQUEST.finditer(data):
            resumed = _LAST_EVENT_ID.search(match.group(1))
            with self._proxy._lock:
                self._proxy.stream_resumed_after.append(int(resumed.group(1)) if resumed else None)
            self._cutting = self._proxy._take("cut_streams")
            self._stalling = self._proxy._take("stall_streams")
            if self._stalling:
                with self._proxy._lock:
                    self._proxy.stalled += 1
            self._log_events = 0
        self._upstream.sendall(data)

    def pump_requests(self) -> None:
        with suppress(OSError):
            while data := self._client.recv(65536):
                self.to_server(data)
        _shut(self._upstream)

    def pump_responses(self) -> None:
        try:
            while data := self._upstream.recv(65536):
                if self._stalling:
                    if self._log_events >= self._proxy.stall_after_log_events:
                        continue  # swallowed: the client waits for what never comes
                    self._log_events += data.count(b"event: log")
                if self._cutting:
                    self._log_events += data.count(b"event: log")
                    if self._log_events >= self._proxy.cut_after_log_events:
                        self._client.sendall(data)  # what came so far, then it hangs up mid-stream
                        break
                self._client.sendall(data)
        except OSError:
            pass
        finally:
            _shut(self._client)
            _shut(self._upstream)


def _shut(sock: socket.socket) -> None:
    with suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


@contextmanager
def proxy_to(upstream_port: int, port: int | None = None) -> Iterator[Proxy]:
    """A proxy on a free port (or `port`) to the server on `upstream_port`, until the block ends."""
    proxy = Proxy(port=port or free_port(), upstream_port=upstream_port)
    listener = socket.create_server(("127.0.0.1", proxy.port))
    stopping = threading.Event()

    def accept() -> None:
        while not stopping.is_set():
            try:
                client, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=proxy.serve, args=(client,), daemon=True).start()

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    try:
        yield proxy
    finally:
        stopping.set()
        _shut(listener)
        listener.close()
        acceptor.join(timeout=10)
