"""The runner's NATS connection: it keeps reconnecting for as long as the runner lives, and never buffers
publishes inside the client while disconnected (the event publisher keeps and resends them itself)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import nkeys
from nats.aio.client import DEFAULT_INBOX_PREFIX
from nats.aio.client import Client as NATS
from nats.errors import AuthorizationError
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from bifrost._internal.protocol import (
    EVENTS_STREAM,
    EVENTS_SUBJECT_WILDCARD,
    MAX_EVENT_BYTES,
    SLOT_LEFT_AT,
    RunnerSlot,
    inbox_prefix,
)
from bifrost_runner.config import RunnerConfig

log = logging.getLogger("bifrost_runner")

READY_CONNECT_SECONDS = 30.0
"""How long a spare runner tries to connect under its slot's identity; past that, it connects once claimed."""


class NatsUnavailableError(RuntimeError):
    """NATS could not be reached at all, or refused the runner's identity."""


class NatsIdentity:
    """The NATS user a connection signs in as, each time it connects or reconnects; `use` sets the one of the
    next time."""

    def __init__(self, jwt: str, seed: str) -> None:
        self.use(jwt, seed)

    def use(self, jwt: str, seed: str) -> None:
        self._jwt = jwt.encode()
        self._keys = nkeys.from_seed(bytearray(seed.encode()))

    def user_jwt(self) -> bytes:
        return self._jwt

    def sign(self, nonce: str) -> bytes:
        signed: bytes = self._keys.sign(nonce.encode())
        return base64.b64encode(signed)


async def connect_runner_nats(config: RunnerConfig, give_up_after: float) -> NATS:
    """The execution's connection, under its own NATS identity when it has one: replies then come to the
    execution's inbox prefix, the only one that identity may subscribe to."""
    if config.nats_jwt is None or config.nats_seed is None:
        return await connect_nats(config.nats_url, give_up_after, name=_connection_name(config.execution_id))
    identity = NatsIdentity(config.nats_jwt, config.nats_seed)
    name = _connection_name(config.execution_id)
    return await connect_nats(config.nats_url, give_up_after, identity, inbox_prefix(config.execution_id), name)


def _connection_name(execution_id: str) -> str:
    """What the runner's connection is called on the NATS server (its monitoring lists connections by it)."""
    return f"bifrost-runner {execution_id}"


class ReadyConnection:
    """A spare runner's connection, made under its slot's identity before its claim came. It serves the claim
    of the slot's execution; a runner that takes it over signs in under its claim's identity on every reconnect
    from then on, and reconnects so before the slot's identity expires (`SLOT_LEFT_AT`)."""

    def __init__(self, slot: RunnerSlot) -> None:
        self.slot = slot
        self._identity = NatsIdentity(slot.nats_jwt, slot.nats_seed) if slot.nats_jwt and slot.nats_seed else None
        self._connecting = asyncio.ensure_future(
            connect_nats(
                slot.nats_url,
                READY_CONNECT_SECONDS,
                self._identity,
                inbox_prefix(slot.execution_id) if self._identity else DEFAULT_INBOX_PREFIX,
                _connection_name(slot.execution_id),
            )
        )
        self._taken = False
        self._leaving: asyncio.TimerHandle | None = None
        self._reconnecting: asyncio.Task[None] | None = None

    def serves(self, config: RunnerConfig) -> bool:
        """Whether this is a connection for the execution of `config`, as `config` would make it."""
        has_identity = config.nats_jwt is not None and config.nats_seed is not None
        return (
            self.slot.execution_id == config.execution_id
            and self.slot.nats_url == config.nats_url
            and has_identity == (self._identity is not None)
        )

    async def take(self, config: RunnerConfig) -> NATS | None:
        """The connection, for the execution of `config` (see `serves`); None when it could not be made."""
        try:
            nc = await self._connecting
        except (NatsUnavailableError, NatsError, OSError) as exc:
            log.warning("execution %s: no connection made ahead (%s); connecting now", config.execution_id, exc)
            return None
        if nc.is_closed:
            return None
        self._taken = True
        if self._identity is not None and config.nats_jwt is not None and config.nats_seed is not None:
            self._identity.use(config.nats_jwt, config.nats_seed)
            delay = max(0.0, self.slot.moment(SLOT_LEFT_AT) - time.time())
            self._leaving = asyncio.get_running_loop().call_later(delay, self._leave_slot_identity, nc)
        return nc

    def _leave_slot_identity(self, nc: NATS) -> None:
        self._reconnecting = asyncio.ensure_future(nc.force_reconnect())

    async def close(self) -> None:
        """Close the connection unless a runner took it (that runner closes it); stop a pending switch."""
        if self._leaving is not None:
            self._leaving.cancel()
        if self._taken:
            return
        self._connecting.cancel()
        with contextlib.suppress(asyncio.CancelledError, NatsUnavailableError, NatsError, OSError):
            await (await self._connecting).close()


async def connect_nats(
    url: str,
    give_up_after: float,
    identity: NatsIdentity | None = None,
    inbox: str | bytes = DEFAULT_INBOX_PREFIX,
    name: str = "bifrost-runner",
) -> NATS:
    nc = NATS()
    refused: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def on_error(exc: Exception) -> None:
        log.warning("NATS: %s", exc)
        if _is_refusal(exc) and not refused.done():
            refused.set_result(str(exc))

    async def on_disconnected() -> None:
        if not nc.is_closed:
            log.warning("NATS: disconnected, reconnecting")

    async def on_reconnected() -> None:
        log.warning("NATS: reconnected")

    connecting = asyncio.ensure_future(
        nc.connect(
            url,
            name=name,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.25,  # type: ignore[arg-type]  # annotated int, used as seconds
            connect_timeout=2,
            pending_size=0,
            error_cb=on_error,
            disconnected_cb=on_disconnected,
            reconnected_cb=on_reconnected,
            user_jwt_cb=identity.user_jwt if identity else None,
            signature_cb=identity.sign if identity else None,
            inbox_prefix=inbox,
        )
    )
    # An identity NATS refuses stays refused: retrying it until the runner's timeout would only delay the failure.
    first: set[asyncio.Future[Any]] = {connecting, refused}
    try:
        await asyncio.wait(first, timeout=give_up_after, return_when=asyncio.FIRST_COMPLETED)
        if connecting.done() and not refused.done():
            connecting.result()
            return nc
    except BaseException:  # cancelled, or the connection failed: none is left behind, connected later
        await _abandon(nc, connecting)
        raise
    await _abandon(nc, connecting)
    if refused.done():
        raise NatsUnavailableError(f"NATS at {url} refused this runner's identity: {refused.result()}")
    raise NatsUnavailableError(f"NATS at {url} unreachable for {give_up_after:.0f} s")


async def _abandon(nc: NATS, connecting: asyncio.Future[None]) -> None:
    connecting.cancel()
    with contextlib.suppress(asyncio.CancelledError, NatsError, OSError):
        await connecting
    with contextlib.suppress(NatsError, OSError):
        await nc.close()


def _is_refusal(exc: Exception) -> bool:
    """Whether NATS refused the identity: an unknown or badly signed one, or one that expired."""
    text = str(exc).lower()
    return isinstance(exc, AuthorizationError) or "authorization violation" in text or "authentication expired" in text


async def ensure_streams(js: JetStreamContext) -> None:
    """Create the events stream when it is missing. The control plane owns the stream's configuration; this is
    for a runner used on its own (tests, a developer's machine)."""
    try:
        await js.stream_info(EVENTS_STREAM)
    except NotFoundError:
        await js.add_stream(name=EVENTS_STREAM, subjects=[EVENTS_SUBJECT_WILDCARD], max_msg_size=MAX_EVENT_BYTES)


REHEARSAL_CONNECT_SECONDS = 1.0
_STAND_IN_INFO = (
    b'INFO {"server_id":"rehearsal","version":"2.10.0","proto":1,"headers":true,"max_payload":1048576,'
    b'"auth_required":true,"nonce":"rehearsal"}\r\n'
)


@contextlib.asynccontextmanager
async def rehearsal_connection() -> AsyncIterator[NATS]:
    """A connection made as an execution's is, under a throwaway identity, to a stand-in NATS server on loopback
    that answers the handshake and ignores the rest. A ready runner connects to NATS only once its claim brings
    the execution's identity; connecting here meanwhile makes the pages that code touches its own (see
    `bifrost_runner.run.rehearse`)."""

    async def stand_in(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(_STAND_IN_INFO)
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            await reader.readuntil(b"PING\r\n")
            writer.write(b"PONG\r\n")
            await reader.read()  # all the client sends, until it closes
        writer.close()

    # Listening on a socket made here: given a host, uvloop resolves it on libuv's thread pool, whose four threads
    # would then live on in the runner, and each change of user at its seal (see `confinement`) waits for every
    # thread of the process.
    listening = socket.create_server(("127.0.0.1", 0))
    server = await asyncio.start_server(stand_in, sock=listening)
    async with server:
        port = server.sockets[0].getsockname()[1]
        seed = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER).decode()
        nc = await connect_nats(
            f"nats://127.0.0.1:{port}",
            REHEARSAL_CONNECT_SECONDS,
            NatsIdentity("rehearsal", seed),
            inbox_prefix("rehearsal"),
            _connection_name("rehearsal"),
        )
        try:
            yield nc
        finally:
            await nc.close()
