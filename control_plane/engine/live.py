"""Committed changes, fanned out in-process: live subscribers (SSE) and waiters for a terminal status."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

from bifrost._internal.protocol import ExecutionStatus
from control_plane.db.models import MAX_LOG_LINE
from control_plane.executions.changes import LiveEvent

# A subscriber further behind than this is cut off instead of growing without bound.
SUBSCRIBER_BACKLOG_LIMIT = 10_000
# How many recently finished executions the hub remembers as such.
RECENT_TERMINAL_LIMIT = 10_000


class LiveStreamLaggedError(Exception):
    """A live subscriber fell too far behind; it should re-read the execution from the database."""


# An execution's database row, as the commit that ended it left it.
FinalRow = Mapping[str, Any]

# Reads log lines `first`..`last` of an execution from the database.
LogReader = Callable[[str, int, int], Awaitable[list[LiveEvent]]]


class LiveSubscription:
    """The events of one execution, in commit order. Iteration ends after the terminal status event.

    Lines committed by another replica are announced separately and may trail this replica's terminal status;
    so before the terminal status is handed out, every line after `skip_lines_through` that was not delivered
    live is read back from the database: a subscriber never misses the end of the log.
    """

    def __init__(self, execution_id: str, read_logs: LogReader | None = None) -> None:
        self.execution_id = execution_id
        self._queue: asyncio.Queue[LiveEvent | None] = asyncio.Queue()
        self._lagged = False
        self._read_logs = read_logs
        self._contiguous_line = 0
        self._lines_above: set[int] = set()
        self._held_back: collections.deque[LiveEvent] = collections.deque()

    def skip_lines_through(self, line: int) -> None:
        """The subscriber already has lines 1..`line` (from the database): don't read them back at the end."""
        self._note_line(line, through=True)

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
        if self._held_back:
            return self._held_back.popleft()
        event = await self._queue.get()
        if event is not None:
            if event.kind == "log":
                self._note_line(event.id)
            elif event.kind == "status" and ExecutionStatus(event.data["status"]).is_terminal:
                return await self._after_missing_lines(event)
            return event
        if self._lagged:
            raise LiveStreamLaggedError(
                f"live events of execution {self.execution_id} fell more than {SUBSCRIBER_BACKLOG_LIMIT} behind"
            )
        raise StopAsyncIteration

    def _note_line(self, line: int, through: bool = False) -> None:
        if through:
            self._contiguous_line = max(self._contiguous_line, line)
            self._lines_above = {seen for seen in self._lines_above if seen > self._contiguous_line}
        elif line > self._contiguous_line:
            self._lines_above.add(line)
        while self._contiguous_line + 1 in self._lines_above:
            self._contiguous_line += 1
            self._lines_above.discard(self._contiguous_line)

    async def _after_missing_lines(self, terminal_status: LiveEvent) -> LiveEvent:
        if self._read_logs is None:
            return terminal_status
        stored = await self._read_logs(self.execution_id, self._contiguous_line + 1, MAX_LOG_LINE)
        missing = [line for line in stored if line.id not in self._lines_above]
        for line in missing:
            self._note_line(line.id)
        self._held_back.extend([*missing, terminal_status])
        return self._held_back.popleft()


class LiveHub:
    def __init__(self) -> None:
        self._subscriptions: dict[str, set[LiveSubscription]] = {}
        self._terminal_waiters: dict[str, set[asyncio.Future[FinalRow | None]]] = {}
        self._terminal_listeners: list[Callable[[str], None]] = []
        self._recently_terminal: collections.OrderedDict[str, None] = collections.OrderedDict()

    def seen_terminal(self, execution_id: str) -> bool:
        """Whether this hub delivered the execution's terminal status lately (the last RECENT_TERMINAL_LIMIT):
        a shortcut past the database for the common question "is it over yet?" right after it ended."""
        return execution_id in self._recently_terminal

    def subscribe(self, execution_id: str, read_logs: LogReader | None = None) -> LiveSubscription:
        subscription = LiveSubscription(execution_id, read_logs)
        self._subscriptions.setdefault(execution_id, set()).add(subscription)
        return subscription

    def unsubscribe(self, subscription: LiveSubscription) -> None:
        subscriptions = self._subscriptions.get(subscription.execution_id)
        if subscriptions is not None:
            subscriptions.discard(subscription)
            if not subscriptions:
                del self._subscriptions[subscription.execution_id]

    def terminal_waiter(self, execution_id: str) -> asyncio.Future[FinalRow | None]:
        waiter: asyncio.Future[FinalRow | None] = asyncio.get_running_loop().create_future()
        self._terminal_waiters.setdefault(execution_id, set()).add(waiter)
        return waiter

    def discard_waiter(self, execution_id: str, waiter: asyncio.Future[FinalRow | None]) -> None:
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

    def deliver(
        self, execution_id: str, events: list[LiveEvent], terminal: bool, final_row: FinalRow | None = None
    ) -> None:
        """Hand committed events to the execution's subscribers; once `terminal`, resolve its terminal waiters with
        `final_row` (None when the row as it ended is not at hand, as for another replica's commit)."""
        for subscription in self._subscriptions.get(execution_id, ()):
            subscription._push(events, terminal)
        if not terminal:
            return
        self._recently_terminal[execution_id] = None
        if len(self._recently_terminal) > RECENT_TERMINAL_LIMIT:
            self._recently_terminal.popitem(last=False)
        for waiter in self._terminal_waiters.pop(execution_id, ()):
            if not waiter.done():
                waiter.set_result(final_row)
        for listener in self._terminal_listeners:
            listener(execution_id)
