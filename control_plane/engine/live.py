"""Committed changes, fanned out in-process: live subscribers (SSE) and waiters for a terminal status."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel

LiveKind = Literal["log", "status", "variables", "result"]

# A subscriber further behind than this is cut off instead of growing without bound.
SUBSCRIBER_BACKLOG_LIMIT = 10_000


class LiveEvent(BaseModel):
    """One change to an execution, delivered after it is committed to the database.

    `id` is the log line number for `log` events and the runner's event seq otherwise. A status the control
    plane decides itself (runner gone, cancel) carries the seq the next runner event would have had, so it
    always sorts after what the database held when it was decided.

    `data` is JSON-ready, by kind: log — `line`, `ts` (ISO 8601, UTC), `level`, `logger`, `message`; status —
    `status`, `error_type`, `error_message`, `duration_ms`; variables — `variables`; result — `result`.
    """

    kind: LiveKind
    id: int
    data: dict[str, Any]


class LogRange(BaseModel):
    """Log lines `first` to `last` of one commit, in place of one `log` event per line."""

    kind: Literal["log_range"] = "log_range"
    first: int
    last: int


def log_live_event(row: Mapping[str, Any]) -> LiveEvent:
    # Built without validation from a row just written or read: this runs for every log line delivered.
    data = {
        "line": row["line"],
        "ts": _json_timestamp(row["ts"]),
        "level": row["level"],
        "logger": row["logger"],
        "message": row["message"],
    }
    return LiveEvent.model_construct(kind="log", id=row["line"], data=data)


def _json_timestamp(ts: datetime) -> str:
    """As pydantic writes a UTC timestamp in JSON (SQLite hands timestamps back without their zone)."""
    utc = ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)
    return utc.isoformat().replace("+00:00", "Z")


class LiveStreamLaggedError(Exception):
    """A live subscriber fell too far behind; it should re-read the execution from the database."""


class LiveSubscription:
    """The events of one execution, in commit order. Iteration ends after the terminal status event."""

    def __init__(self, execution_id: str) -> None:
        self.execution_id = execution_id
        self._queue: asyncio.Queue[LiveEvent | None] = asyncio.Queue()
        self._lagged = False

    def _push(self, events: list[LiveEvent], terminal: bool) -> None:
        if self._lagged:
            return
        if self._queue.qsize() + len(events) > SUBSCRIBER_BACKLOG_LIMIT:
            self._lagged = True
            self._queue.put_nowait(None)
            return
        for event in events:
            self._queue.put_nowait(event)
        if terminal:
            self._queue.put_nowait(None)

    def __aiter__(self) -> AsyncIterator[LiveEvent]:
        return self

    async def __anext__(self) -> LiveEvent:
        event = await self._queue.get()
        if event is not None:
            return event
        if self._lagged:
            raise LiveStreamLaggedError(
                f"live events of execution {self.execution_id} fell more than {SUBSCRIBER_BACKLOG_LIMIT} behind"
            )
        raise StopAsyncIteration


class LiveHub:
    def __init__(self) -> None:
        self._subscriptions: dict[str, set[LiveSubscription]] = {}
        self._terminal_waiters: dict[str, set[asyncio.Future[None]]] = {}
        self._terminal_listeners: list[Callable[[str], None]] = []

    def subscribe(self, execution_id: str) -> LiveSubscription:
        subscription = LiveSubscription(execution_id)
        self._subscriptions.setdefault(execution_id, set()).add(subscription)
        return subscription

    def unsubscribe(self, subscription: LiveSubscription) -> None:
        subscriptions = self._subscriptions.get(subscription.execution_id)
        if subscriptions is not None:
            subscriptions.discard(subscription)
            if not subscriptions:
                del self._subscriptions[subscription.execution_id]

    def terminal_waiter(self, execution_id: str) -> asyncio.Future[None]:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._terminal_waiters.setdefault(execution_id, set()).add(waiter)
        return waiter

    def discard_waiter(self, execution_id: str, waiter: asyncio.Future[None]) -> None:
        waiters = self._terminal_waiters.get(execution_id)
        if waiters is not None:
            waiters.discard(waiter)
            if not waiters:
                del self._terminal_waiters[execution_id]

    def on_terminal(self, listener: Callable[[str], None]) -> None:
        """Call `listener(execution_id)` whenever an execution reaches a terminal status."""
        self._terminal_listeners.append(listener)

    def has_subscribers(self, execution_id: str) -> bool:
        return execution_id in self._subscriptions

    def deliver(self, execution_id: str, events: list[LiveEvent], terminal: bool) -> None:
        for subscription in self._subscriptions.get(execution_id, ()):
            subscription._push(events, terminal)
        if not terminal:
            return
        for waiter in self._terminal_waiters.pop(execution_id, ()):
            if not waiter.done():
                waiter.set_result(None)
        for listener in self._terminal_listeners:
            listener(execution_id)
