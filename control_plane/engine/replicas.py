"""Committed changes announced to the other control-plane replicas over core NATS, so their terminal waiters
and live subscribers hear of executions this replica ingested. Log lines travel as line ranges: only a
replica that has subscribers for the execution reads them back from the database."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Annotated

import nats.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from pydantic import BaseModel, Field, ValidationError

from control_plane.engine.live import LiveHub
from control_plane.executions.changes import LiveEvent, LogRange
from control_plane.executions.repository import ExecutionRepository

logger = logging.getLogger(__name__)

LIVE_SUBJECT_WILDCARD = "bifrost.live.*"
ORIGIN_HEADER = "Bifrost-Origin"


def live_subject(execution_id: str) -> str:
    return f"bifrost.live.{execution_id}"


class _Announcement(BaseModel):
    execution_id: str
    terminal: bool
    changes: list[Annotated[LiveEvent | LogRange, Field(discriminator="kind")]]


class ReplicaAnnouncer:
    def __init__(self, hub: LiveHub, repository: ExecutionRepository) -> None:
        self._hub = hub
        self._repository = repository
        self._origin = uuid.uuid4().hex
        self._nats: NatsClient | None = None

    async def start(self, client: NatsClient) -> None:
        self._nats = client
        await client.subscribe(LIVE_SUBJECT_WILDCARD, cb=self._receive)

    def stop(self) -> None:
        self._nats = None

    async def announce(self, execution_id: str, changes: list[LiveEvent | LogRange], terminal: bool) -> None:
        if self._nats is None:
            return
        announcement = _Announcement(execution_id=execution_id, terminal=terminal, changes=changes)
        payload = announcement.model_dump_json().encode()
        if len(payload) > self._nats.max_payload:
            # A result or variables too large to relay: other replicas' subscribers read it from the execution.
            announcement.changes = [change for change in announcement.changes if change.kind in ("status", "log_range")]
            payload = announcement.model_dump_json().encode()
        try:
            await self._nats.publish(live_subject(execution_id), payload, headers={ORIGIN_HEADER: self._origin})
        except nats.errors.Error as exc:
            logger.debug("announcing changes of %s to other replicas failed: %s", execution_id, exc)

    async def _receive(self, message: Msg) -> None:
        if message.headers and message.headers.get(ORIGIN_HEADER) == self._origin:
            return
        try:
            announcement = _Announcement.model_validate_json(message.data)
        except ValidationError:
            logger.warning("ignoring a malformed announcement on %s", message.subject)
            return
        execution_id = announcement.execution_id
        events: list[LiveEvent] = []
        if self._hub.has_subscribers(execution_id):
            for change in announcement.changes:
                if isinstance(change, LogRange):
                    lines = await asyncio.to_thread(self._repository.log_lines, execution_id, change.first, change.last)
                    events.extend(lines)
                else:
                    events.append(change)
        self._hub.deliver(execution_id, events, announcement.terminal)
