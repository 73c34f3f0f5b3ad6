"""The runner's NATS connection: it keeps reconnecting for as long as the runner lives, and never buffers
publishes inside the client while disconnected (the event publisher keeps and resends them itself)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from typing import Any

import nkeys
from nats.aio.client import DEFAULT_INBOX_PREFIX, RawCredentials
from nats.aio.client import Client as NATS
from nats.errors import AuthorizationError
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from bifrost._internal.protocol import (
    EVENTS_STREAM,
    EVENTS_SUBJECT_WILDCARD,
    MAX_EVENT_BYTES,
    inbox_prefix,
    nats_credentials_file,
)
from bifrost_runner.config import RunnerConfig

log = logging.getLogger("bifrost_runner")


class NatsUnavailableError(RuntimeError):
    """NATS could not be reached at all, or refused the runner's identity."""


async def connect_runner_nats(config: RunnerConfig, give_up_after: float) -> NATS:
    """The execution's connection, under its own NATS identity when it has one: replies then come to the
    execution's inbox prefix, the only one that identity may subscribe to."""
    if config.nats_jwt is None or config.nats_seed is None:
        return await connect_nats(config.nats_url, give_up_after)
    credentials = RawCredentials(nats_credentials_file(config.nats_jwt, config.nats_seed))
    return await connect_nats(config.nats_url, give_up_after, credentials, inbox_prefix(config.execution_id))


async def connect_nats(
    url: str, give_up_after: float, credentials: RawCredentials | None = None, inbox: str | bytes = DEFAULT_INBOX_PREFIX
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
            name="bifrost-runner",
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.25,  # type: ignore[arg-type]  # annotated int, used as seconds
            connect_timeout=2,
            pending_size=0,
            error_cb=on_error,
            disconnected_cb=on_disconnected,
            reconnected_cb=on_reconnected,
            user_credentials=credentials,
            inbox_prefix=inbox,
        )
    )
    # An identity NATS refuses stays refused: retrying it until the runner's timeout would only delay the failure.
    first: set[asyncio.Future[Any]] = {connecting, refused}
    await asyncio.wait(first, timeout=give_up_after, return_when=asyncio.FIRST_COMPLETED)
    if connecting.done() and not refused.done():
        connecting.result()
        return nc
    connecting.cancel()
    with contextlib.suppress(asyncio.CancelledError, NatsError, OSError):
        await connecting
    with contextlib.suppress(NatsError, OSError):
        await nc.close()
    if refused.done():
        raise NatsUnavailableError(f"NATS at {url} refused this runner's identity: {refused.result()}")
    raise NatsUnavailableError(f"NATS at {url} unreachable for {give_up_after:.0f} s")


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
    b'"nonce":"rehearsal"}\r\n'
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

    server = await asyncio.start_server(stand_in, "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        seed = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER).decode()
        credentials = RawCredentials(nats_credentials_file("rehearsal", seed))
        nc = await connect_nats(
            f"nats://127.0.0.1:{port}", REHEARSAL_CONNECT_SECONDS, credentials, inbox_prefix("rehearsal")
        )
        try:
            yield nc
        finally:
            await nc.close()
