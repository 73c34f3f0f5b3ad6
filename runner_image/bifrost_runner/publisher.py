"""Publishing one execution's events to JetStream.

Events are numbered from 1 without gaps and carry `Nats-Msg-Id` `<execution_id>:<seq>`. They are pipelined
(sent without waiting for each acknowledgement) and kept until JetStream acknowledges them: when NATS goes away,
every unacknowledged event is sent again, in order, once it is back; the stream's de-duplication drops the
copies it already stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any, TypeVar

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from pydantic import BaseModel

from bifrost._internal.protocol import events_subject, message_id

log = logging.getLogger("bifrost_runner")

E = TypeVar("E", bound=BaseModel)

ACK_TIMEOUT_SECONDS = 2.0
_FIRST_RETRY_SECONDS = 0.05
_MAX_RETRY_SECONDS = 1.0


class EventTooLargeError(ValueError):
    """An event does not fit in one NATS message of the connected server."""


class EventPublisher:
    def __init__(self, nc: NATS, execution_id: str, ack_timeout: float = ACK_TIMEOUT_SECONDS) -> None:
        self._nc = nc
        self._execution_id = execution_id
        self._subject = events_subject(execution_id)
        self._ack_timeout = ack_timeout
        self._next_seq = 1
        self._send_from = 1
        self._unacked: dict[int, bytes] = {}
        self._unacked_bytes = 0
        self._sent_at: dict[int, float] = {}
        self._last_ack_at = 0.0
        self._to_send = asyncio.Event()
        self._held_until: float | None = None
        self._hold_ended = asyncio.Event()
        self._all_acked = asyncio.Event()
        self._all_acked.set()
        self._inbox = nc.new_inbox()
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def backlog_bytes(self) -> int:
        """Bytes of events not yet acknowledged."""
        return self._unacked_bytes

    async def start(self) -> None:
        self._ack_subscription = await self._nc.subscribe(f"{self._inbox}.*", cb=self._on_ack)
        self._tasks = [asyncio.create_task(self._send_loop()), asyncio.create_task(self._watch_acks())]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        with contextlib.suppress(NatsError):
            await self._ack_subscription.unsubscribe()

    def emit(self, event_type: type[E], **fields: Any) -> E:
        """Number the event, queue it for publishing and return it. Never blocks."""
        seq = self._next_seq
        event = event_type(execution_id=self._execution_id, seq=seq, **fields)
        data = event.model_dump_json().encode()
        if len(data) > self._nc.max_payload:
            raise EventTooLargeError(
                f"a {event_type.__name__} of {len(data):,} bytes does not fit in a NATS message: the server's"
                f" max_payload is {self._nc.max_payload:,} bytes"
            )
        self._unacked[seq] = data
        self._unacked_bytes += len(data)
        self._next_seq += 1
        self._all_acked.clear()
        self._to_send.set()
        self._hold_ended.set()
        return event

    def hold(self, seconds: float) -> None:
        """Keep what was emitted so far for up to `seconds`, unless another event is emitted first: then they leave
        together. (A run that ends within that time reports in one go, which the control plane stores in one
        transaction.)"""
        self._held_until = asyncio.get_running_loop().time() + seconds
        self._hold_ended.clear()

    def _resend_unacknowledged(self) -> None:
        if self._unacked:
            self._send_from = next(iter(self._unacked))  # the oldest: events are added in seq order
            self._to_send.set()

    async def wait_acknowledged(self, within_seconds: float) -> bool:
        """Wait until JetStream has acknowledged every event emitted so far."""
        try:
            await asyncio.wait_for(self._all_acked.wait(), within_seconds)
        except TimeoutError:
            return False
        return True

    async def _send_loop(self) -> None:
        retry_delay = _FIRST_RETRY_SECONDS
        loop = asyncio.get_running_loop()
        while True:
            await self._to_send.wait()
            if self._held_until is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._hold_ended.wait(), self._held_until - loop.time())
                self._held_until = None
            self._to_send.clear()
            while not await self.send_queued():
                # Disconnected: the client buffers nothing, so wait for it to reconnect and retry.
                await asyncio.sleep(retry_delay)
                retry_delay = min(retry_delay * 2, _MAX_RETRY_SECONDS)
            retry_delay = _FIRST_RETRY_SECONDS

    async def send_queued(self) -> bool:
        """Publish the queued events in order; False when NATS refused one (disconnected)."""
        loop = asyncio.get_running_loop()
        while self._send_from < self._next_seq:
            seq = self._send_from
            data = self._unacked.get(seq)
            if data is not None:
                try:
                    await self._nc.publish(
                        self._subject,
                        data,
                        reply=f"{self._inbox}.{seq}",
                        headers={"Nats-Msg-Id": message_id(self._execution_id, seq)},
                    )
                except NatsError:
                    return False
                if seq in self._unacked:
                    self._sent_at[seq] = loop.time()
            if self._send_from == seq:  # unless a resend moved it back meanwhile
                self._send_from = seq + 1
        return True

    async def _watch_acks(self) -> None:
        """Resend from the oldest unacknowledged event when its acknowledgement is overdue (lost in a
        disconnect, or refused because the stream does not exist yet). Overdue counts from the last
        acknowledgement too: a JetStream that acknowledges slowly, under load, is not sent everything again."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self._ack_timeout / 4)
            if not self._unacked:
                continue
            sent_at = self._sent_at.get(next(iter(self._unacked)))
            if sent_at is not None and loop.time() - max(sent_at, self._last_ack_at) > self._ack_timeout:
                self._resend_unacknowledged()

    async def _on_ack(self, msg: Msg) -> None:
        seq = int(msg.subject.rsplit(".", 1)[1])
        if msg.headers and msg.headers.get("Status"):
            return  # 503 "no responders": no stream takes the subject yet; the watch resends later.
        try:
            reply = json.loads(msg.data)
        except ValueError:
            log.warning("unreadable JetStream acknowledgement for event %d: %r", seq, msg.data[:200])
            return
        if "error" in reply:
            log.warning("JetStream refused event %d: %s", seq, reply["error"])
            return
        data = self._unacked.pop(seq, None)
        if data is not None:
            self._unacked_bytes -= len(data)
            self._sent_at.pop(seq, None)
            self._last_ack_at = asyncio.get_running_loop().time()
        if not self._unacked:
            self._all_acked.set()
