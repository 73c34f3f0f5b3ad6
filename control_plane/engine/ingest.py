"""Runner events into the database: one durable pull consumer, batched transactions, ack after commit.

Events are held in memory (unacked) until they can be applied in order. The database row's `last_event_seq`
makes every write idempotent, so a redelivered or replayed event is skipped, and a restart between commit and
ack loses and doubles nothing.

Runners publish only storable values (`bifrost._internal.storable`); an event that holds others anyway (a NUL, a number
that is not finite, nesting past `BIFROST_MAX_JSON_DEPTH`) is stored made storable by the same rules, and
counted: one such event must neither stall ingest nor break what anyone reads afterwards.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field

import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from pydantic import ValidationError

from bifrost._internal.protocol import (
    EVENTS_STREAM,
    EVENTS_SUBJECT_WILDCARD,
    Event,
    FinishedEvent,
    LogEvent,
    ResultEvent,
    StartedEvent,
    VariablesEvent,
    events_subject,
    parse_event,
)
from bifrost._internal.storable import ESCAPED_NUL, Storable, may_be_unstorable, nests_deeper
from control_plane.engine.streams import INGEST_ACK_WAIT_SECONDS, INGEST_CONSUMER, ingest_consumer_config, next_batch
from control_plane.engine.tasks import cancel_and_wait
from control_plane.executions.changes import Announce
from control_plane.executions.repository import ExecutionRepository
from control_plane.metrics import EVENTS_INGESTED, EVENTS_MADE_STORABLE, EVENTS_REJECTED

logger = logging.getLogger(__name__)

FETCH_BATCH = 1_000
IDLE_POLL_SECONDS = 1.0
HELD_POLL_SECONDS = 0.1
RETRY_SECONDS = 0.5
# How long an event after a missing seq waits for the missing one before it is applied anyway: longer than
# a redelivery takes, so events a crashed control plane had fetched but not acked are never skipped.
GAP_WAIT_SECONDS = INGEST_ACK_WAIT_SECONDS + 1.0
# How long a batch that holds an execution's started, variables or result event but not its finished event waits for
# more: a short workflow's events come in one burst, stored in one transaction so. Any message ends the wait.
UNFINISHED_WAIT_SECONDS = 0.005


@dataclass
class _HeldEvent:
    event: Event
    received_at: float
    messages: list[Msg] = field(default_factory=list)


class Ingestor:
    def __init__(
        self, js: JetStreamContext, repository: ExecutionRepository, announce: Announce, max_json_depth: int
    ) -> None:
        self._js = js
        self._repository = repository
        self._announce = announce
        self._max_json_depth = max_json_depth
        self._held: dict[str, dict[int, _HeldEvent]] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        subscription = await self._js.pull_subscribe(
            EVENTS_SUBJECT_WILDCARD, durable=INGEST_CONSUMER, stream=EVENTS_STREAM, config=ingest_consumer_config()
        )
        self._task = asyncio.create_task(self._run(subscription), name="bifrost-ingest")

    async def stop(self) -> None:
        """Stop consuming. Held (unacked) events are redelivered to whichever ingestor runs next."""
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None
        self._held.clear()

    async def _run(self, subscription: JetStreamContext.PullSubscription) -> None:
        while True:
            try:
                await self._step(subscription)
            except Exception:  # the loop must outlive any one bad batch; its events are redelivered
                logger.exception("ingesting runner events failed; retrying")
                await asyncio.sleep(RETRY_SECONDS)

    async def _step(self, subscription: JetStreamContext.PullSubscription) -> None:
        try:
            wait = HELD_POLL_SECONDS if self._held else IDLE_POLL_SECONDS
            events = [await self._hold(message) for message in await next_batch(subscription, FETCH_BATCH, wait)]
            if _unfinished(events):
                for message in await next_batch(subscription, FETCH_BATCH, UNFINISHED_WAIT_SECONDS):
                    await self._hold(message)
        except nats.errors.Error as exc:
            logger.debug("fetching runner events failed (%s); retrying", exc)
            await asyncio.sleep(RETRY_SECONDS)
            return
        if self._held:
            await self._commit()

    async def _hold(self, message: Msg) -> Event | None:
        """Hold `message`'s event (None: dropped)."""
        try:
            event = parse_event(message.data)
        except ValidationError as exc:
            logger.error("dropping a malformed runner event on %s: %s", message.subject, exc)
            EVENTS_REJECTED.labels("malformed").inc()
            await _settle(message.term())
            return None
        if message.subject != events_subject(event.execution_id):
            logger.error("dropping an event of execution %s published on %s", event.execution_id, message.subject)
            EVENTS_REJECTED.labels("wrong_subject").inc()
            await _settle(message.term())
            return None
        if self._may_be_unstorable(event, message.data):
            event = self._made_storable(event)
        held = self._held.setdefault(event.execution_id, {})
        entry = held.get(event.seq)
        if entry is None:
            entry = held[event.seq] = _HeldEvent(event=event, received_at=time.monotonic())
        entry.messages.append(message)
        return event

    def _may_be_unstorable(self, event: Event, data: bytes) -> bool:
        """Cheap, so that the events of a healthy runner are not walked value by value. (An unpaired surrogate
        does not parse: such an event was dropped as malformed.)"""
        if isinstance(event, LogEvent):
            return ESCAPED_NUL in data  # its only numbers are counts
        if may_be_unstorable(data):
            return True
        if isinstance(event, ResultEvent):
            return nests_deeper(event.result, self._max_json_depth)
        if isinstance(event, VariablesEvent):
            return nests_deeper(event.variables, self._max_json_depth)
        return False

    def _made_storable(self, event: Event) -> Event:
        storable = Storable(self._max_json_depth)
        fields = {name: storable.value(value) for name, value in event.model_dump().items()}
        if not storable.repairs:
            return event
        logger.warning(
            "execution %s: runner event %d (%s) held %s; stored made storable",
            event.execution_id,
            event.seq,
            event.type,
            ", ".join(sorted(storable.repairs)),
        )
        EVENTS_MADE_STORABLE.labels(event.type).inc()
        return type(event).model_validate(fields)

    async def _commit(self) -> None:
        now = time.monotonic()
        accept_gaps = {
            execution_id
            for execution_id, held in self._held.items()
            if now - min(entry.received_at for entry in held.values()) >= GAP_WAIT_SECONDS
        }
        batch = {execution_id: [held[seq].event for seq in sorted(held)] for execution_id, held in self._held.items()}
        result = await asyncio.to_thread(self._repository.ingest, batch, accept_gaps)
        # Announced before the acks: whoever waits for these changes is told as soon as they are durable. A
        # crash before the acks redelivers the events, which the next ingest skips.
        if result.committed:
            await self._announce(result.committed)
        for execution_id in result.unknown_executions:
            logger.warning("dropping events of execution %s: it does not exist", execution_id)
            for entry in self._held.pop(execution_id).values():
                await _ack_all(entry.messages)
        for execution_id, ingested_through in result.ingested_through.items():
            held = self._held[execution_id]
            for seq in [seq for seq in held if seq <= ingested_through]:
                await _ack_all(held.pop(seq).messages)
            if not held:
                del self._held[execution_id]
        for event_type, count in result.event_counts.items():
            EVENTS_INGESTED.labels(event_type).inc(count)


def _unfinished(events: list[Event | None]) -> bool:
    """Whether an execution's started, variables or result event came without its finished event (log events
    alone never wait: a long run's come on and on)."""
    ending = {event.execution_id for event in events if isinstance(event, StartedEvent | VariablesEvent | ResultEvent)}
    return bool(ending - {event.execution_id for event in events if isinstance(event, FinishedEvent)})


async def _ack_all(messages: list[Msg]) -> None:
    for message in messages:
        await _settle(message.ack())


async def _settle(reply: Awaitable[None]) -> None:
    """Acks are best effort: one lost while NATS is away means a redelivery, which ingest skips."""
    try:
        await reply
    except nats.errors.Error as exc:
        logger.debug("acknowledging a runner event failed: %s", exc)
