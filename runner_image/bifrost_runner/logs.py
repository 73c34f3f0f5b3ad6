"""Capturing what a workflow logs and prints: every record is echoed to the runner's real stdout at once
(`kubectl logs` works) and published in batches, bounded by count, size and time."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Protocol, TextIO

from bifrost._internal.protocol import LogEvent, LogRecord
from bifrost._internal.redaction import Redactor
from bifrost._internal.storable import storable_text
from bifrost_runner.publisher import EventPublisher

BATCH_RECORDS = 500
BATCH_BYTES = 256 * 1024
BATCH_INTERVAL_SECONDS = 0.1
MAX_MESSAGE_CHARS = 32 * 1024
MAX_BUFFERED_RECORDS = 50_000
MAX_BUFFERED_BYTES = 16 * 1024 * 1024
MAX_BACKLOG_BYTES = 8 * 1024 * 1024
"""Together the cap on what a runner holds while NATS is away or slow: records waiting here (by count and
bytes), and published events JetStream has not acknowledged yet."""

WORKFLOW_LOG_LEVEL = logging.INFO
"""The root logger's level while a workflow runs."""

RUNNER_LOGGERS = ("bifrost_runner", "nats")
"""The runner's own loggers: they go to its stderr only, never into the execution's log."""

runner_call: ContextVar[bool] = ContextVar("bifrost_runner_call", default=False)
"""Set while the runner itself calls the control plane on the workflow's behalf: what libraries log during
such a call (httpx's request lines) is the runner's business, not the execution's."""

_Entry = tuple[float, str, str, str]


def _entry_bytes(logger: str, message: str) -> int:
    """About what a record adds to a batch's JSON."""
    return len(message) + len(logger) + 80


def _truncated(message: str) -> str:
    if len(message) <= MAX_MESSAGE_CHARS:
        return message
    return f"{message[:MAX_MESSAGE_CHARS]}… [{len(message) - MAX_MESSAGE_CHARS:,} more characters truncated]"


class LogCollector:
    """Takes records from any thread; `run` publishes them as `LogEvent`s from the event loop.

    When NATS is slow or away, records wait here (up to MAX_BUFFERED_RECORDS and MAX_BUFFERED_BYTES) and a
    workflow thread that logs past that waits until they are published: a NATS outage pauses a chatty workflow
    rather than losing its lines. Only the event loop's own thread (an async workflow) cannot wait, since it
    publishes: what it logs past the cap is dropped and the next batch says how many.
    """

    def __init__(self, publisher: EventPublisher, echo: TextIO, redactor: Redactor) -> None:
        self._publisher = publisher
        self._echo = echo
        self._redactor = redactor
        self._lock = threading.Lock()
        self._buffer: deque[_Entry] = deque()
        self._buffered_bytes = 0
        self._dropped = 0
        self._wake = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()

    def add(self, created: float, level: str, logger: str, message: str) -> None:
        message = _truncated(storable_text(self._redactor.text(message)))
        logger = storable_text(logger)
        timestamp = datetime.fromtimestamp(created, UTC)
        on_loop = threading.get_ident() == self._loop_thread
        while True:
            self._wait_for_room(on_loop)
            with self._lock:
                if self._full() and not on_loop:
                    continue  # another thread took the room first: wait again
                self._echo.write(f"{timestamp.isoformat(timespec='milliseconds')} {level} {logger}: {message}\n")
                if self._full():
                    self._dropped += 1
                    return
                had_full_batch = self._has_full_batch()
                self._buffer.append((created, level, logger, message))
                self._buffered_bytes += _entry_bytes(logger, message)
                if not had_full_batch and self._has_full_batch():
                    self._loop.call_soon_threadsafe(self._wake.set)
                return

    def _has_full_batch(self) -> bool:
        return len(self._buffer) >= BATCH_RECORDS or self._buffered_bytes >= BATCH_BYTES

    def _full(self) -> bool:
        return len(self._buffer) >= MAX_BUFFERED_RECORDS or self._buffered_bytes >= MAX_BUFFERED_BYTES

    def _wait_for_room(self, on_loop: bool) -> None:
        """Back-pressure: a workflow thread that logs faster than records are published waits (without the
        lock) for the publisher to catch up, for as long as NATS takes to come back. The event loop's own thread
        never waits: it drains the buffer."""
        if on_loop or not self._full():
            return
        self._loop.call_soon_threadsafe(self._wake.set)
        pause = 0.002
        while self._full():
            time.sleep(pause)
            pause = min(pause * 2, 0.1)

    async def run(self) -> None:
        """Publish full batches as soon as they fill, and whatever waits once per BATCH_INTERVAL_SECONDS. Runs
        until cancelled: `asyncio.timeout`, not `wait_for`, which on Python 3.11 swallows a cancel that comes
        as the wake-up does and would leave this loop running forever."""
        while True:
            try:
                async with asyncio.timeout(BATCH_INTERVAL_SECONDS):
                    await self._wake.wait()
            except TimeoutError:
                self.publish(final=False)
            else:
                self._wake.clear()
                self.publish(final=False, full_batches_only=True)

    def publish(self, final: bool, full_batches_only: bool = False) -> None:
        """Publish what is buffered (with `full_batches_only`, what fills whole batches); unless `final`, hold
        back while NATS has not caught up."""
        while final or self._publisher.backlog_bytes < MAX_BACKLOG_BYTES:
            if full_batches_only and not self._has_full_batch():
                return
            records, dropped = self._take_batch()
            if not records and not dropped:
                return
            self._publisher.emit(LogEvent, records=records, dropped=dropped)

    def _take_batch(self) -> tuple[list[LogRecord], int]:
        records: list[LogRecord] = []
        size = 0
        with self._lock:
            self._echo.flush()
            while self._buffer and len(records) < BATCH_RECORDS and size < BATCH_BYTES:
                created, level, logger, message = self._buffer.popleft()
                size += _entry_bytes(logger, message)
                records.append(
                    LogRecord.model_construct(
                        ts=datetime.fromtimestamp(created, UTC), level=level, logger=logger, message=message
                    )
                )
            self._buffered_bytes -= size
            dropped, self._dropped = self._dropped, 0
        return records, dropped


class LogSink(Protocol):
    """Where captured records go: a `LogCollector`, or (a workflow run locally) the terminal."""

    def add(self, created: float, level: str, logger: str, message: str) -> None: ...


class _CaptureHandler(logging.Handler):
    def __init__(self, collector: LogSink) -> None:
        super().__init__(logging.NOTSET)
        self._collector = collector
        self.setFormatter(logging.Formatter("%(message)s"))

    def handle(self, record: logging.LogRecord) -> bool:
        """As `logging.Handler.handle`, without the handler's lock: `emit` may wait for room in the collector
        (which has a lock of its own), and the event loop's thread, which makes that room, logs too."""
        accepted = bool(self.filter(record))
        if accepted:
            self.emit(record)
        return accepted

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith(RUNNER_LOGGERS) or runner_call.get():
            return
        try:
            message = self.format(record)
        except Exception:
            self.handleError(record)
            return
        self._collector.add(record.created, record.levelname, record.name, message)


class _StreamCapture(io.TextIOBase):
    """Stands in for sys.stdout / sys.stderr: each complete line becomes one record."""

    encoding = "utf-8"

    def __init__(self, collector: LogSink, name: str, level: str) -> None:
        super().__init__()
        self._collector = collector
        self._name = name
        self._level = level
        self._partial = ""
        self._lock = threading.Lock()

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        with self._lock:
            lines = (self._partial + text).split("\n")
            self._partial = lines.pop()
        # Added outside the lock: `add` may wait for room, and the event loop's thread, which makes it, prints too.
        now = time.time()
        for line in lines:
            self._collector.add(now, self._level, self._name, line)
        return len(text)

    def finish(self) -> None:
        with self._lock:
            if self._partial:
                self._collector.add(time.time(), self._level, self._name, self._partial)
                self._partial = ""


@contextlib.contextmanager
def captured_output(collector: LogSink) -> Iterator[None]:
    """Route the root logger (at WORKFLOW_LOG_LEVEL) and sys.stdout / sys.stderr into `collector` for the block."""
    root = logging.getLogger()
    handler = _CaptureHandler(collector)
    previous_level = root.level
    stdout = _StreamCapture(collector, "stdout", "INFO")
    stderr = _StreamCapture(collector, "stderr", "ERROR")
    previous_streams = sys.stdout, sys.stderr
    root.addHandler(handler)
    _set_level(root, WORKFLOW_LOG_LEVEL)
    sys.stdout, sys.stderr = stdout, stderr
    try:
        yield
    finally:
        sys.stdout, sys.stderr = previous_streams
        stdout.finish()
        stderr.finish()
        root.removeHandler(handler)
        _set_level(root, previous_level)


def _set_level(logger: logging.Logger, level: int) -> None:
    """Set only a level that differs: setting one clears the cache of every logger there is."""
    if logger.level != level:
        logger.setLevel(level)
