"""The execution engine: NATS, the queue and its dispatcher, event ingestion, runner exits, cancel, live events."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Coroutine, Iterator, Mapping
from typing import Any

import nats
import nats.errors
import sqlalchemy
from nats.aio.client import Client as NatsClient
from nats.aio.client import RawCredentials
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from pydantic import ValidationError

from bifrost._internal.protocol import (
    EVENTS_STREAM,
    QUEUE_STREAM,
    QUEUE_SUBJECT,
    CancelRequest,
    ExecutionStatus,
    control_subject,
    events_subject,
    nats_credentials_file,
    parse_event,
)
from bifrost._internal.redaction import Redactor
from control_plane.backends.base import Backend, ClaimChannel, ReadiesRunners, RunEnd, RunnerExit
from control_plane.db.models import as_utc, utcnow
from control_plane.engine.dispatch import Dispatcher, LaunchOutcome, LaunchRecord
from control_plane.engine.ingest import Ingestor
from control_plane.engine.live import FinalRow, LiveHub, LiveSubscription
from control_plane.engine.nats_server import EmbeddedNats, NatsServerError
from control_plane.engine.replicas import ReplicaAnnouncer
from control_plane.engine.streams import ensure_streams
from control_plane.executions.changes import Committed, LiveEvent
from control_plane.executions.repository import ExecutionRepository
from control_plane.executions.sealed_parameters import readable_secrets
from control_plane.executions.slots import Slots
from control_plane.metrics import EXECUTIONS_FINISHED, RUN_DURATION, RUNNING
from control_plane.security.encryption import SecretCipher
from control_plane.security.nats_identities import KEYS_FILE, AccountSigner, NatsKeys
from control_plane.security.tokens import TokenIssuer
from control_plane.settings import Settings

logger = logging.getLogger(__name__)

_EXIT_ERROR_TYPES = {ExecutionStatus.TIMEOUT: "Timeout", ExecutionStatus.CANCELLED: "Cancelled"}
"""The error type of an execution a backend ended with that status; any other: `RunnerExited`."""

NATS_WATCH_SECONDS = 0.5
"""How often the engine checks that the nats-server it started is still running."""


class ExecutionNotFoundError(LookupError):
    def __init__(self, execution_id: str) -> None:
        super().__init__(f"execution {execution_id!r} does not exist")
        self.execution_id = execution_id


class EngineNotStartedError(RuntimeError):
    """An engine method that needs NATS was called before `start()` (or after `stop()`)."""


class ExecutionEngine:
    def __init__(
        self, settings: Settings, db: sqlalchemy.Engine, backend: Backend, tokens: TokenIssuer, cipher: SecretCipher
    ) -> None:
        self._settings = settings
        self._backend = backend
        self._db = db
        self._cipher = cipher
        self._repository = ExecutionRepository(db)
        self._hub = LiveHub()
        self._dispatcher = Dispatcher(settings, self._repository, Slots(db), cipher, backend, tokens, self._announce)
        self._hub.on_terminal(self._dispatcher.capacity_freed)
        self._replicas = ReplicaAnnouncer(self._hub, self._repository)
        self._embedded_nats: EmbeddedNats | None = None
        self._nats: NatsClient | None = None
        self._js: JetStreamContext | None = None
        self._ingestor: Ingestor | None = None
        self._nats_url = ""
        self._background: set[asyncio.Task[None]] = set()

    @property
    def backend(self) -> Backend:
        return self._backend

    @property
    def nats_url(self) -> str:
        if not self._nats_url:
            raise EngineNotStartedError("the engine has not been started")
        return self._nats_url

    async def start(self) -> None:
        signer = await self._start_nats()
        credentials = signer.control_plane() if signer is not None else None
        self._nats = await nats.connect(
            self._nats_url,
            name="bifrost-control-plane",
            user_credentials=RawCredentials(nats_credentials_file(credentials.jwt, credentials.seed))
            if credentials is not None
            else None,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.25,
            error_cb=self._on_nats_error,
            disconnected_cb=self._on_nats_disconnected,
            reconnected_cb=self._on_nats_reconnected,
        )
        self._js = self._nats.jetstream()
        await ensure_streams(self._js)
        await self._replicas.start(self._nats)
        self._ingestor = Ingestor(self._js, self._repository, self._announce, self._settings.max_json_depth)
        await self._ingestor.start()
        if isinstance(self._backend, ReadiesRunners):
            self._backend.connect_runners_to(self._nats_url, signer)
        await self._backend.start(self._on_runner_exit, ClaimChannel(self._nats, self._nats_url, signer))
        await self._backend.reconcile(await asyncio.to_thread(self._repository.launched_active_ids, self._backend.name))
        await self._dispatcher.start(self._js, self._nats_url, signer, self._nats_connected)
        logger.info("engine started: NATS at %s, %s backend", self._nats_url, self._backend.name)

    async def _start_nats(self) -> AccountSigner | None:
        """Start or find NATS; the signer of NATS identities, or None when NATS does not check them."""
        if not self._settings.nats_url:
            keys = await asyncio.to_thread(NatsKeys.load_or_create, self._settings.data_dir / KEYS_FILE)
            self._embedded_nats = EmbeddedNats(self._settings.data_dir / "nats", keys)
            self._nats_url = await asyncio.to_thread(self._embedded_nats.start)
            self._spawn(self._keep_nats_running(self._embedded_nats))
            return AccountSigner(keys.account)
        self._nats_url = self._settings.nats_url
        if self._settings.nats_account_seed is None:
            # Refusing to start would break every external NATS set up before identities existed; isolation
            # that is not there must not look as if it were, though.
            logger.warning(
                "BIFROST_NATS_ACCOUNT_SEED is not set: runners connect to the external NATS at %s without an "
                "identity of their own, and workflow code can read and forge every execution's events. Set up "
                "the server with `bifrost nats-config` to isolate them",
                self._nats_url,
            )
            return None
        return AccountSigner(self._settings.nats_account_seed.get_secret_value(), "BIFROST_NATS_ACCOUNT_SEED")

    async def stop(self) -> None:
        await self._dispatcher.stop()
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        await self._backend.stop()
        if self._ingestor is not None:
            await self._ingestor.stop()
            self._ingestor = None
        self._replicas.stop()
        if self._nats is not None:
            with contextlib.suppress(nats.errors.Error):
                await self._nats.close()
            self._nats, self._js = None, None
        if self._embedded_nats is not None:
            await asyncio.to_thread(self._embedded_nats.stop)
            self._embedded_nats = None
        self._nats_url = ""

    def ready_execution_id(self) -> str | None:
        """An id for a new sync execution that starts sooner with it: its runner waits connected to NATS already
        (see `ReadiesRunners`). Given out once; None when there is none."""
        return self._backend.ready_execution_id() if isinstance(self._backend, ReadiesRunners) else None

    async def submit(self, execution_id: str, *, sync: bool, new_row: Mapping[str, Any] | None = None) -> None:
        """Hand a Pending execution over for launch: at once when `sync` (and the limits allow), else queued. With
        `new_row` (its `executions` row) it is recorded first; a sync one in the transaction that claims it for
        launch."""
        if not sync:
            if new_row is None:
                await self._require_execution(execution_id)
            else:
                await asyncio.to_thread(self._repository.insert, new_row)
            await self._queue(execution_id)
            return
        outcome = await self._dispatcher.launch_now(execution_id, new_row)
        if outcome is LaunchOutcome.UNKNOWN:
            raise ExecutionNotFoundError(execution_id)
        if outcome is LaunchOutcome.WAITING:
            await self._queue(execution_id)

    def _nats_connected(self) -> bool:
        return self._nats is not None and self._nats.is_connected

    async def wait_terminal(self, execution_id: str, timeout: float) -> bool:  # noqa: ASYNC109 (the API's contract)
        """Whether the execution reached a terminal status within `timeout` seconds."""
        if self._hub.seen_terminal(execution_id):
            return True
        with self.watch_terminal(execution_id) as finished:
            status = await self._require_execution(execution_id)
            if status.is_terminal:
                return True
            try:
                await asyncio.wait_for(finished, timeout)
            except TimeoutError:
                return False
            return True

    @contextlib.contextmanager
    def watch_terminal(self, execution_id: str) -> Iterator[asyncio.Future[FinalRow | None]]:
        """Resolves when the execution reaches a terminal status after this call (here or on another replica): with
        its row as it ended when this replica committed the end, else with None."""
        waiter = self._hub.terminal_waiter(execution_id)
        try:
            yield waiter
        finally:
            self._hub.discard_waiter(execution_id, waiter)

    @contextlib.asynccontextmanager
    async def live(self, execution_id: str) -> AsyncIterator[LiveSubscription]:
        """The execution's changes from now on, each after its commit: subscribe, then read the backlog."""
        subscription = self._hub.subscribe(execution_id, self._read_log_lines)
        try:
            yield subscription
        finally:
            self._hub.unsubscribe(subscription)

    async def _read_log_lines(self, execution_id: str, first: int, last: int) -> list[LiveEvent]:
        return await asyncio.to_thread(self._repository.log_lines, execution_id, first, last)

    async def cancel(self, execution_id: str, reason: str = "Cancelled by user") -> None:
        """Cancel an execution. Returns at once; a runner that ignores the request is killed after the grace."""
        status = await self._require_execution(execution_id)
        if status.is_terminal:
            return
        closed = await asyncio.to_thread(
            self._repository.close,
            execution_id,
            ExecutionStatus.CANCELLED,
            error_type="Cancelled",
            error_message=reason,
            only_unlaunched=True,
        )
        if closed is not None:
            await self._announce([closed])
            return
        request = CancelRequest(reason=reason).model_dump_json().encode()
        await self._connected().publish(control_subject(execution_id), request)
        self._spawn(self._kill_after_cancel_grace(execution_id, reason))

    async def healthy(self) -> bool:
        if self._nats is None or self._js is None or not self._nats.is_connected:
            return False
        try:
            for stream in (EVENTS_STREAM, QUEUE_STREAM):
                await self._js.stream_info(stream)
        except (nats.errors.Error, TimeoutError):
            return False
        return True

    async def _keep_nats_running(self, embedded: EmbeddedNats) -> None:
        """Start the embedded nats-server again whenever it dies; clients reconnect to it on their own."""
        while True:
            await asyncio.sleep(NATS_WATCH_SECONDS)
            if embedded.running():
                continue
            logger.error("the embedded nats-server (pid %s) died; restarting it", embedded.pid)
            try:
                await asyncio.to_thread(embedded.restart)
            except (NatsServerError, OSError) as exc:
                logger.error("restarting the embedded nats-server failed: %s; trying again", exc)

    async def _require_execution(self, execution_id: str) -> ExecutionStatus:
        status = await asyncio.to_thread(self._repository.status, execution_id)
        if status is None:
            raise ExecutionNotFoundError(execution_id)
        return status

    def _connected(self) -> NatsClient:
        if self._nats is None:
            raise EngineNotStartedError("the engine has not been started")
        return self._nats

    def _jetstream(self) -> JetStreamContext:
        if self._js is None:
            raise EngineNotStartedError("the engine has not been started")
        return self._js

    async def _queue(self, execution_id: str) -> None:
        """Put a recorded execution's id on the queue, which wakes a dispatcher at once. The execution waits in the
        database either way: when NATS cannot take the message, a dispatcher finds it there once NATS is back."""
        try:
            await self._enqueue(execution_id)
        except nats.errors.Error as exc:
            logger.warning("execution %s could not be queued (%s); it waits until NATS is back", execution_id, exc)

    async def _enqueue(self, execution_id: str) -> None:
        await self._jetstream().publish(
            QUEUE_SUBJECT, execution_id.encode(), stream=QUEUE_STREAM, headers={"Nats-Msg-Id": execution_id}
        )

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _kill_after_cancel_grace(self, execution_id: str, reason: str) -> None:
        if await self.wait_terminal(execution_id, self._settings.cancel_grace_seconds):
            return
        # Killed before it is closed: once closed, its slot of the concurrency limits is free for the next run.
        await self._backend.kill(execution_id)
        closed = await asyncio.to_thread(
            self._repository.close,
            execution_id,
            ExecutionStatus.CANCELLED,
            error_type="Cancelled",
            error_message=f"{reason}; the runner did not stop within {self._settings.cancel_grace_seconds:g}s "
            "and was killed",
        )
        if closed is not None:
            await self._announce([closed])

    async def _on_runner_exit(self, runner_exit: RunnerExit) -> None:
        self._spawn(self._close_after_runner_exit(runner_exit))

    async def _close_after_runner_exit(self, runner_exit: RunnerExit) -> None:
        """A runner is gone: give its last events time to be ingested, then close the execution if they
        never brought a final status."""
        execution_id = runner_exit.execution_id
        try:
            while True:
                if await self.wait_terminal(execution_id, self._settings.runner_exit_grace_seconds):
                    return
                if not await self._events_waiting(execution_id):
                    break
        except ExecutionNotFoundError:
            logger.warning("a runner exited for execution %s, which does not exist", execution_id)
            return
        status = runner_exit.status if runner_exit.status and runner_exit.status.is_terminal else ExecutionStatus.FAILED
        # What a runner printed on its way out was not redacted by the runner when the runner could not (a crash,
        # a child process writing to the runner's output): masked here with every secret it could have read.
        redactor = await asyncio.to_thread(self._readable_secrets, execution_id)
        reason = redactor.text(runner_exit.reason)
        closed = await asyncio.to_thread(
            self._repository.close,
            execution_id,
            status,
            error_type=_EXIT_ERROR_TYPES.get(status, "RunnerExited"),
            error_message=reason,
            runner_log_tail=None if runner_exit.log_tail is None else redactor.text(runner_exit.log_tail),
        )
        if closed is not None:
            logger.warning("execution %s failed: %s", execution_id, reason)
            await self._announce([closed])

    def _readable_secrets(self, execution_id: str) -> Redactor:
        """Every secret value the execution could have read."""
        scope = self._repository.secret_scope(execution_id)
        return Redactor() if scope is None else readable_secrets(self._db, self._cipher, *scope)

    async def _events_waiting(self, execution_id: str) -> bool:
        """Whether the events stream holds an event of this execution that ingest has not applied yet."""
        try:
            last = await self._jetstream().get_last_msg(EVENTS_STREAM, events_subject(execution_id))
        except NotFoundError:
            return False
        except (nats.errors.Error, TimeoutError) as exc:
            logger.debug("cannot read the last event of %s (%s); waiting longer", execution_id, exc)
            return True
        if last.data is None:
            return False
        try:
            last_seq = parse_event(last.data).seq
        except ValidationError:
            return False
        ingested = await asyncio.to_thread(self._repository.last_event_seq, execution_id)
        return ingested is not None and last_seq > ingested

    async def _announce(self, committed: list[Committed]) -> None:
        for change in committed:
            if change.terminal_status is not None and not change.launched:
                launch = self._dispatcher.launch_in_progress(change.execution_id)
                if launch is not None:
                    # Its runner finished before this replica recorded the launch (the record follows the
                    # backend's answer): the end is announced once the launch is recorded, so whoever waits for it
                    # reads the execution with its runner.
                    self._spawn(self._announce_once_launched(change, launch))
                    continue
                # The launch may have been recorded while the change was being committed, after the commit read
                # the execution: without reading it again, its backend would never hear of the run's end.
                if await asyncio.to_thread(self._repository.launched, change.execution_id):
                    change.launched = True
                    change.final_row = None  # the row as it ended predates the record
            await self._announce_change(change)

    async def _announce_once_launched(self, change: Committed, launch: asyncio.Future[LaunchRecord | None]) -> None:
        record = await asyncio.shield(launch)
        change.launched = record is not None
        # The row as it ended predates the record, which is all that changed in it since.
        change.final_row = None if record is None or change.final_row is None else {**change.final_row, **record}
        await self._announce_change(change)

    async def _announce_change(self, change: Committed) -> None:
        terminal = change.terminal_status is not None
        if change.terminal_status is not None:
            EXECUTIONS_FINISHED.labels(change.terminal_status.value).inc()
            if change.duration_ms is not None:
                RUN_DURATION.observe(change.duration_ms / 1000)
            if change.launched:
                RUNNING.dec()
                self._spawn(self._backend.run_ended(_end_of(change, change.terminal_status)))
        # Without a launch recorded when it ended, the row as it ended may lack the runner (recorded by another
        # replica meanwhile): waiters read the row again rather than take it.
        final_row = change.final_row if change.launched else None
        if self._hub.has_subscribers(change.execution_id):
            self._hub.deliver(change.execution_id, change.live_events(), terminal, final_row)
        elif terminal:
            self._hub.deliver(change.execution_id, [], terminal, final_row)
        await self._replicas.announce(change.execution_id, change.changes, terminal)

    async def _on_nats_error(self, error: Exception) -> None:
        logger.warning("NATS error: %s", error)

    async def _on_nats_disconnected(self) -> None:
        if self._nats is not None and not self._nats.is_closed:
            logger.warning("disconnected from NATS at %s; reconnecting", self._nats_url)

    async def _on_nats_reconnected(self) -> None:
        logger.info("reconnected to NATS at %s", self._nats_url)


def _end_of(change: Committed, status: ExecutionStatus) -> RunEnd:
    """How the execution a commit ended ended: its error message from the status event, its times from the row."""
    error: str | None = None
    for event in reversed(change.changes):
        if isinstance(event, LiveEvent) and event.kind == "status":
            message = event.data.get("error_message")
            error = None if message is None else str(message)
            break
    # A commit of the control plane's own (runner gone, cancel) carries no row: it ended it just now.
    row = change.final_row or {}
    started, finished = row.get("started_at"), row.get("finished_at") or utcnow()
    return RunEnd(
        execution_id=change.execution_id,
        status=status,
        error_message=error,
        started_at=None if started is None else as_utc(started),
        finished_at=as_utc(finished),
    )
