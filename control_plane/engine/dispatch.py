"""Launching executions: the queue's durable consumer (shared by every replica) and the concurrency limits.

A queue message is acked only once the backend accepted the launch and the launch is recorded on the row; a
redelivered message finds the row launched (or finished) and is acked without a second launch. Messages that
hit a limit are parked, unacked, until an execution finishes.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from bifrost._internal.protocol import QUEUE_STREAM, QUEUE_SUBJECT, ExecutionStatus, RunPayload
from control_plane.backends.base import Backend, LaunchSpec, RunnerResources, RunnerWorkspace
from control_plane.db.models import as_utc, utcnow
from control_plane.engine.streams import (
    DISPATCH_ACK_WAIT_SECONDS,
    DISPATCH_CONSUMER,
    dispatch_consumer_config,
    next_batch,
)
from control_plane.engine.tasks import cancel_and_wait
from control_plane.executions.changes import Announce
from control_plane.executions.launch import LaunchProblem, LaunchTarget, PayloadLimits, launch_target
from control_plane.executions.repository import ExecutionRepository
from control_plane.metrics import DISPATCH_LATENCY, QUEUE_DEPTH, RUNNING
from control_plane.security.encryption import SecretCipher
from control_plane.security.nats_identities import AccountSigner
from control_plane.security.tokens import TokenIssuer
from control_plane.settings import Settings

logger = logging.getLogger(__name__)

FETCH_BATCH = 10
IDLE_POLL_SECONDS = 1.0
PARKED_POLL_SECONDS = 0.25
RETRY_SECONDS = 0.5
# Parked messages beyond this are left in the stream (for other replicas) until room frees up.
PARK_LIMIT = 1_000
# A message whose launch failed this many times closes its execution as Failed.
MAX_LAUNCH_ATTEMPTS = 5
QUEUE_DEPTH_INTERVAL_SECONDS = 1.0
# The execution token outlives the workflow's timeout by this much, for the runner's last reports.
TOKEN_GRACE = timedelta(minutes=5)

class LaunchOutcome(enum.Enum):
    LAUNCHED = "launched"
    SKIPPED = "skipped"  # already launched, finished, or closed here
    UNKNOWN = "unknown"  # no such execution
    GLOBAL_LIMIT = "global_limit"
    WORKFLOW_LIMIT = "workflow_limit"


# Outcomes after which the queue message is done with.
SETTLED = frozenset({LaunchOutcome.LAUNCHED, LaunchOutcome.SKIPPED, LaunchOutcome.UNKNOWN})


class LaunchError(Exception):
    """The backend did not accept a launch."""


@dataclass
class _Parked:
    message: Msg
    execution_id: str
    workflow_name: str


class Dispatcher:
    def __init__(
        self,
        settings: Settings,
        repository: ExecutionRepository,
        cipher: SecretCipher,
        backend: Backend,
        tokens: TokenIssuer,
        announce: Announce,
    ) -> None:
        self._settings = settings
        self._repository = repository
        self._cipher = cipher
        self._limits = PayloadLimits(settings.max_result_bytes, settings.max_json_depth)
        self._backend = backend
        self._tokens = tokens
        self._announce = announce
        self._nats_url = ""
        self._nats_signer: AccountSigner | None = None
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._parked: list[_Parked] = []
        self._launches: dict[str, asyncio.Future[bool]] = {}
        """Launches in progress here, by execution: each resolves with whether the launch got recorded."""
        self._holding: dict[int, Msg] = {}
        """Messages taken from the queue and not settled yet (being launched, waiting their turn, or parked)."""
        self._saturated = False
        self._queue_depth_at = 0.0
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self, js: JetStreamContext, nats_url: str, nats_signer: AccountSigner | None) -> None:
        """`nats_signer` mints each runner's NATS identity; None: runners connect without one."""
        self._nats_url = nats_url
        self._nats_signer = nats_signer
        subscription = await js.pull_subscribe(
            QUEUE_SUBJECT, durable=DISPATCH_CONSUMER, stream=QUEUE_STREAM, config=dispatch_consumer_config()
        )
        self._tasks = [
            asyncio.create_task(self._run(subscription), name="bifrost-dispatch"),
            asyncio.create_task(self._keep_holding(), name="bifrost-dispatch-progress"),
        ]

    async def stop(self) -> None:
        """Stop dispatching. Parked messages stay unacked and are redelivered to the next dispatcher."""
        for task in self._tasks:
            await cancel_and_wait(task)
        self._tasks = []
        self._parked.clear()
        self._holding.clear()

    def launch_in_progress(self, execution_id: str) -> asyncio.Future[bool] | None:
        """The launch of the execution this dispatcher has under way and not recorded yet: it resolves with
        whether the launch got recorded."""
        return self._launches.get(execution_id)

    def capacity_freed(self, _execution_id: str) -> None:
        self._wake.set()

    async def launch_now(self, execution_id: str, new_row: Mapping[str, Any] | None = None) -> LaunchOutcome:
        """Launch without the queue (sync requests), recording the execution first when it is `new_row`. A launch
        the backend refuses closes the execution."""
        try:
            outcome, _workflow_name = await self._try_launch(execution_id, new_row, warm=True)
        except LaunchError as exc:
            await self._close_unlaunchable(execution_id, str(exc))
            return LaunchOutcome.SKIPPED
        return outcome

    async def _run(self, subscription: JetStreamContext.PullSubscription) -> None:
        while True:
            self._wake.clear()
            try:
                await self._retry_parked()
                if self._saturated or len(self._parked) >= PARK_LIMIT:
                    # Not `wait_for`: on Python 3.11 it swallows a cancel that comes as the wake-up does.
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(IDLE_POLL_SECONDS):
                            await self._wake.wait()
                    self._saturated = False
                    continue
                batch = await self._fetch(subscription)
                self._holding.update((id(message), message) for message in batch)
                for message in batch:
                    await self._handle(message)
                await self._update_queue_depth(subscription)
            except Exception:  # the loop must outlive any one failure; unacked messages come again
                logger.exception("dispatching failed; retrying")
                self._holding = {id(parked.message): parked.message for parked in self._parked}
                await asyncio.sleep(RETRY_SECONDS)

    async def _fetch(self, subscription: JetStreamContext.PullSubscription) -> list[Msg]:
        wait = PARKED_POLL_SECONDS if self._parked else IDLE_POLL_SECONDS
        try:
            return await next_batch(subscription, FETCH_BATCH, wait)
        except nats.errors.Error as exc:
            logger.debug("fetching from the queue failed (%s); retrying", exc)
            await asyncio.sleep(RETRY_SECONDS)
            return []

    async def _handle(self, message: Msg) -> None:
        execution_id = message.data.decode(errors="replace")
        if self._saturated:
            self._park(message, execution_id, workflow_name="")
            return
        try:
            outcome, workflow_name = await self._try_launch(execution_id)
        except LaunchError as exc:
            await self._launch_failed(message, execution_id, str(exc))
            return
        if outcome in SETTLED:
            await self._settle(message, message.ack())
            return
        self._saturated = outcome is LaunchOutcome.GLOBAL_LIMIT
        self._park(message, execution_id, workflow_name)

    def _park(self, message: Msg, execution_id: str, workflow_name: str) -> None:
        self._parked.append(_Parked(message, execution_id, workflow_name))

    async def _settle(self, message: Msg, reply: Awaitable[None]) -> None:
        self._holding.pop(id(message), None)
        await _settle(reply)

    async def _keep_holding(self) -> None:
        """Tell JetStream every held message is still being worked on, so it is not redelivered meanwhile: one
        launch may take long, and the messages fetched with it wait their turn."""
        while True:
            await asyncio.sleep(DISPATCH_ACK_WAIT_SECONDS / 4)
            for message in list(self._holding.values()):
                await _settle(message.in_progress())

    async def _retry_parked(self) -> None:
        if not self._parked:
            return
        counts = await asyncio.to_thread(self._repository.active_counts)
        total = sum(counts.values())
        still_parked: list[_Parked] = []
        for index, parked in enumerate(self._parked):
            if total >= self._settings.max_concurrency:
                self._saturated = True
                still_parked.extend(self._parked[index:])
                break
            workflow_full = counts.get(parked.workflow_name, 0) >= self._settings.max_concurrency_per_workflow
            if parked.workflow_name and workflow_full:
                still_parked.append(parked)
                continue
            try:
                outcome, parked.workflow_name = await self._try_launch(parked.execution_id)
            except LaunchError as exc:
                await self._launch_failed(parked.message, parked.execution_id, str(exc))
                continue
            if outcome is LaunchOutcome.LAUNCHED:
                total += 1
                counts[parked.workflow_name] = counts.get(parked.workflow_name, 0) + 1
            if outcome in SETTLED:
                await self._settle(parked.message, parked.message.ack())
            else:
                still_parked.append(parked)
        self._parked = still_parked

    async def _try_launch(
        self, execution_id: str, new_row: Mapping[str, Any] | None = None, *, warm: bool = False
    ) -> tuple[LaunchOutcome, str]:
        """Launch if the row still needs it and the limits allow; the outcome and the workflow's name. `warm`: a
        sync run, which a waiting runner may take."""
        async with self._lock:
            target = await asyncio.to_thread(self._launch_target, execution_id, new_row)
            if target is None:
                logger.warning("not launching execution %s: it does not exist", execution_id)
                return LaunchOutcome.UNKNOWN, ""
            workflow_name = target.workflow_name
            if not target.launchable:
                return LaunchOutcome.SKIPPED, workflow_name
            # A sub-workflow (no counts read) runs within its parent's slot: the parent waits for it, so
            # holding it back for a slot could deadlock a full system.
            counts = target.active_counts
            if counts is not None:
                RUNNING.set(sum(counts.values()))
                if sum(counts.values()) >= self._settings.max_concurrency:
                    return LaunchOutcome.GLOBAL_LIMIT, workflow_name
                if counts.get(workflow_name, 0) >= self._settings.max_concurrency_per_workflow:
                    return LaunchOutcome.WORKFLOW_LIMIT, workflow_name
            if target.payload is None:
                problem = target.problem or LaunchProblem("LaunchFailed", "the execution cannot run")
                await self._close_unlaunchable(execution_id, problem.message, problem.error_type)
                return LaunchOutcome.SKIPPED, workflow_name
            await self._launch(target, target.payload, warm)
            RUNNING.inc()
            return LaunchOutcome.LAUNCHED, workflow_name

    def _launch_target(self, execution_id: str, new_row: Mapping[str, Any] | None) -> LaunchTarget | None:
        """The execution as it is launched, with the counts its limits need; None when there is no such
        execution. With `new_row`, it is recorded first."""
        read = self._repository.launch_row(execution_id, count_active=True, new_row=new_row)
        return None if read is None else launch_target(*read, self._limits, self._cipher)

    async def _launch(self, target: LaunchTarget, payload: RunPayload, warm: bool) -> None:
        recorded = self._launches[target.execution_id] = asyncio.get_running_loop().create_future()
        ok = False
        try:
            await self._launch_and_record(target, payload, warm)
            ok = True
        finally:
            del self._launches[target.execution_id]
            recorded.set_result(ok)

    async def _launch_and_record(self, target: LaunchTarget, payload: RunPayload, warm: bool) -> None:
        timeout_seconds = payload.timeout_seconds
        expires_at = utcnow() + timedelta(seconds=timeout_seconds) + TOKEN_GRACE
        token = self._tokens.issue(
            execution_id=target.execution_id, org_id=target.org_id, user_id=target.user_id, expires_at=expires_at
        )
        signer = self._nats_signer
        spec = LaunchSpec(
            execution_id=target.execution_id,
            workflow_name=target.workflow_name,
            org_id=target.org_id,
            token=token,
            timeout_seconds=timeout_seconds,
            api_url=self._settings.api_url,
            nats_url=self._nats_url,
            nats_credentials=signer.runner(target.execution_id, expires_at) if signer is not None else None,
            workspace=RunnerWorkspace.from_settings(self._settings),
            resources=RunnerResources.of_workflow(target.resources),
            payload=payload,
            report_seconds=self._settings.runner_report_seconds,
            warm=warm,
        )
        try:
            await self._backend.launch(spec)
        except Exception as exc:
            raise LaunchError(f"the {self._backend.name} backend could not start the runner: {exc}") from exc
        status = await asyncio.to_thread(
            self._repository.record_launch,
            target.execution_id,
            self._backend.name,
            self._backend.runner_ref(target.execution_id),
        )
        if status is ExecutionStatus.CANCELLED:
            await self._backend.kill(target.execution_id)
        DISPATCH_LATENCY.observe((utcnow() - as_utc(target.created_at)).total_seconds())

    async def _launch_failed(self, message: Msg, execution_id: str, reason: str) -> None:
        attempts = message.metadata.num_delivered or 1
        if attempts < MAX_LAUNCH_ATTEMPTS:
            logger.warning("launch attempt %d of execution %s failed: %s", attempts, execution_id, reason)
            await self._settle(message, message.nak(delay=float(2**attempts)))
            return
        await self._close_unlaunchable(execution_id, f"{reason} (after {attempts} attempts)")
        await self._settle(message, message.ack())

    async def _close_unlaunchable(self, execution_id: str, reason: str, error_type: str = "LaunchFailed") -> None:
        logger.error("execution %s cannot be launched: %s", execution_id, reason)
        closed = await asyncio.to_thread(
            self._repository.close, execution_id, ExecutionStatus.FAILED, error_type=error_type, error_message=reason
        )
        if closed is not None:
            await self._announce([closed])

    async def _update_queue_depth(self, subscription: JetStreamContext.PullSubscription) -> None:
        now = time.monotonic()
        if now - self._queue_depth_at < QUEUE_DEPTH_INTERVAL_SECONDS:
            return
        self._queue_depth_at = now
        try:
            info = await subscription.consumer_info()
        except (nats.errors.Error, TimeoutError) as exc:
            logger.debug("reading the queue depth failed: %s", exc)
            return
        QUEUE_DEPTH.set((info.num_pending or 0) + (info.num_ack_pending or 0))


async def _settle(reply: Awaitable[None]) -> None:
    """Acks are best effort: a lost one means a redelivery, which finds the row launched and is skipped."""
    try:
        await reply
    except nats.errors.Error as exc:
        logger.debug("settling a queue message failed: %s", exc)
