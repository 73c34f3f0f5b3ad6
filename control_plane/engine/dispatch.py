"""Launching executions: every replica's dispatcher claims waiting executions in the database, within the
concurrency limits (`executions.slots`), and launches what it claimed.

The database is what waits: an execution waits, Pending, until a dispatcher claims it, whether its queue message
came or not. A message on the queue (the engine puts one there for each execution it records) only wakes a
dispatcher at once; so does the end of an execution, here or on another replica. Otherwise every dispatcher
looks again every second. A claim lasts while its launch does (it is renewed meanwhile); a dispatcher that dies
in the middle of a launch leaves a claim that lapses, and the execution is claimed again.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import logging
import uuid
from collections.abc import Callable, Coroutine, Mapping
from datetime import timedelta
from typing import Any, TypedDict

import nats.errors
from nats.js import JetStreamContext

from bifrost._internal.protocol import QUEUE_STREAM, QUEUE_SUBJECT, ExecutionStatus, RunPayload
from control_plane.backends.base import Backend, LaunchSpec, RunnerResources, RunnerWorkspace
from control_plane.db.models import as_utc, utcnow
from control_plane.engine.streams import DISPATCH_CONSUMER, dispatch_consumer_config, next_batch
from control_plane.engine.tasks import cancel_and_wait
from control_plane.executions.changes import Announce
from control_plane.executions.launch import LaunchProblem, LaunchTarget, PayloadLimits, launch_target
from control_plane.executions.repository import ExecutionRepository
from control_plane.executions.slots import CLAIM_LEASE, Claim, Limits, Slots
from control_plane.metrics import DISPATCH_LATENCY, QUEUE_DEPTH, RUNNING
from control_plane.security.encryption import SecretCipher
from control_plane.security.nats_identities import AccountSigner
from control_plane.security.tokens import TokenIssuer
from control_plane.settings import Settings

logger = logging.getLogger(__name__)

CLAIM_BATCH = 10
"""Executions one claim takes at most, so that the replicas share a burst."""
IDLE_POLL_SECONDS = 1.0
RETRY_SECONDS = 0.5
# A launch the backend refused this many times closes its execution as Failed.
MAX_LAUNCH_ATTEMPTS = 5
RENEW_SECONDS = CLAIM_LEASE.total_seconds() / 5
# The execution token outlives the workflow's timeout by this much, for the runner's last reports.
TOKEN_GRACE = timedelta(minutes=5)


class LaunchOutcome(enum.Enum):
    LAUNCHED = "launched"
    SKIPPED = "skipped"  # already launched or finished, or closed here
    UNKNOWN = "unknown"  # no such execution
    WAITING = "waiting"  # held back by the concurrency limits (or launched by another replica meanwhile)


class LaunchRecord(TypedDict):
    """The columns of an execution that recording its launch sets."""

    backend: str
    runner_ref: str | None


class LaunchError(Exception):
    """The backend did not accept a launch."""


class Dispatcher:
    def __init__(
        self,
        settings: Settings,
        repository: ExecutionRepository,
        slots: Slots,
        cipher: SecretCipher,
        backend: Backend,
        tokens: TokenIssuer,
        announce: Announce,
    ) -> None:
        self._settings = settings
        self._repository = repository
        self._slots = slots
        self._limits = Limits(total=settings.max_concurrency, per_workflow=settings.max_concurrency_per_workflow)
        self._cipher = cipher
        self._payload_limits = PayloadLimits(settings.max_result_bytes, settings.max_json_depth)
        self._backend = backend
        self._tokens = tokens
        self._announce = announce
        self._name = f"dispatcher-{uuid.uuid4().hex[:12]}"
        """This dispatcher's name on its claims."""
        self._nats_url = ""
        self._nats_signer: AccountSigner | None = None
        self._connected: Callable[[], bool] = lambda: False
        self._wake = asyncio.Event()
        self._launches: dict[str, asyncio.Future[LaunchRecord | None]] = {}
        """Launches in progress here, by execution: each resolves with what recording it set, None when it was not
        recorded."""
        self._tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[None]] = set()
        self._total_reached = False
        """Whether the last claim found the total limit reached with executions waiting."""
        self._freed = False
        """Whether an execution ended since the last claim."""
        self._claimed_at = 0.0

    async def start(
        self, js: JetStreamContext, nats_url: str, nats_signer: AccountSigner | None, connected: Callable[[], bool]
    ) -> None:
        """`nats_signer` mints each runner's NATS identity; None: runners connect without one. `connected`: whether
        NATS is reachable, without which no runner could report (nothing is launched meanwhile)."""
        self._nats_url = nats_url
        self._nats_signer = nats_signer
        self._connected = connected
        subscription = await js.pull_subscribe(
            QUEUE_SUBJECT, durable=DISPATCH_CONSUMER, stream=QUEUE_STREAM, config=dispatch_consumer_config()
        )
        self._wake.set()
        self._tasks = [
            asyncio.create_task(self._listen(subscription), name="bifrost-dispatch-wake"),
            asyncio.create_task(self._dispatch(), name="bifrost-dispatch"),
            asyncio.create_task(self._renew_claims(), name="bifrost-dispatch-claims"),
        ]

    async def stop(self) -> None:
        for task in [*self._tasks, *self._background]:
            await cancel_and_wait(task)
        self._tasks = []

    def launch_in_progress(self, execution_id: str) -> asyncio.Future[LaunchRecord | None] | None:
        """The launch of the execution this dispatcher has under way and not recorded yet: it resolves with the
        columns recording it set, None when it was not recorded."""
        return self._launches.get(execution_id)

    def capacity_freed(self, _execution_id: str) -> None:
        self._freed = True
        self._wake.set()

    async def launch_now(self, execution_id: str, new_row: Mapping[str, Any] | None = None) -> LaunchOutcome:
        """Launch at once if the limits allow (sync requests), recording the execution first when it is `new_row`;
        it waits otherwise. A launch the backend refuses closes the execution."""
        claim, target = await asyncio.to_thread(self._claim_and_read, execution_id, new_row)
        claimed = claim.execution_ids
        outcome = LaunchOutcome.WAITING
        if execution_id in claimed:
            outcome = await self._launch_claimed(execution_id, refusal_closes=True, warm=True, target=target)
        others = [claimed_id for claimed_id in claimed if claimed_id != execution_id]
        if others:  # claimed along with it, as older executions go first: launched without holding up the answer
            self._spawn(self._launch_all(others))
        if outcome is LaunchOutcome.WAITING:
            status = await asyncio.to_thread(self._repository.status, execution_id)
            if status is None:
                return LaunchOutcome.UNKNOWN
            if status.is_terminal:
                return LaunchOutcome.SKIPPED
        return outcome

    def _claim_and_read(
        self, execution_id: str, new_row: Mapping[str, Any] | None
    ) -> tuple[Claim, LaunchTarget | None]:
        """A claim, and when it took the execution, what launching it takes: in one worker-thread call."""
        claim = self._slots.claim(self._name, self._limits, utcnow(), most=CLAIM_BATCH, new_row=new_row)
        return claim, self._launch_target(execution_id) if execution_id in claim.execution_ids else None

    async def _listen(self, subscription: JetStreamContext.PullSubscription) -> None:
        """Queue messages wake the dispatcher: the executions they name are read from the database."""
        while True:
            try:
                messages = await next_batch(subscription, CLAIM_BATCH, IDLE_POLL_SECONDS)
            except nats.errors.Error as exc:
                logger.debug("fetching from the queue failed (%s); retrying", exc)
                await asyncio.sleep(RETRY_SECONDS)
                continue
            except Exception:  # the loop must outlive any one failure
                logger.exception("fetching from the queue failed; retrying")
                await asyncio.sleep(RETRY_SECONDS)
                continue
            for message in messages:
                with contextlib.suppress(nats.errors.Error):
                    await message.ack()
            if messages:
                self._wake.set()

    async def _dispatch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            # Not `wait_for`: on Python 3.11 it swallows a cancel that comes as the wake-up does.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(IDLE_POLL_SECONDS):
                    await self._wake.wait()
            self._wake.clear()
            if not self._connected():
                continue
            if self._total_reached and not self._freed and loop.time() - self._claimed_at < IDLE_POLL_SECONDS:
                continue  # woken by new work while the total limit is reached: nothing can start before one ends
            self._freed = False
            self._claimed_at = loop.time()
            try:
                while await self._claim_and_launch():
                    pass
            except Exception:  # the loop must outlive any one failure; what it did not launch still waits
                logger.exception("dispatching failed; retrying")
                await asyncio.sleep(RETRY_SECONDS)

    async def _claim_and_launch(self) -> bool:
        """One claim, and the launches of what it took; whether it took anything."""
        now = utcnow()
        waiting = await asyncio.to_thread(self._slots.waiting_count, now)
        QUEUE_DEPTH.set(waiting)
        if not waiting:
            self._total_reached = False
            return False
        claim = await asyncio.to_thread(self._slots.claim, self._name, self._limits, now, most=CLAIM_BATCH)
        self._total_reached = claim.total_reached
        for execution_id in claim.execution_ids:
            await self._launch_claimed(execution_id, refusal_closes=False)
        return bool(claim.execution_ids)

    async def _launch_all(self, execution_ids: list[str]) -> None:
        for execution_id in execution_ids:
            await self._launch_claimed(execution_id, refusal_closes=False)

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _renew_claims(self) -> None:
        while True:
            await asyncio.sleep(RENEW_SECONDS)
            try:
                await asyncio.to_thread(self._slots.renew, self._name, list(self._launches), utcnow())
            except Exception:  # the next renewal comes well within the lease
                logger.exception("renewing the claims of launches under way failed")

    async def _launch_claimed(
        self, execution_id: str, *, refusal_closes: bool, warm: bool = False, target: LaunchTarget | None = None
    ) -> LaunchOutcome:
        """Launch an execution this dispatcher claimed (`target`: as read since it was claimed). A launch the backend
        refuses is tried again later, or, with `refusal_closes` or after too many refusals, closes the execution.
        `warm`: a sync request's own execution, which a waiting runner may take."""
        if target is None:
            target = await asyncio.to_thread(self._launch_target, execution_id)
        if target is None:
            return LaunchOutcome.UNKNOWN
        if not target.launchable:
            return LaunchOutcome.SKIPPED
        if target.payload is None:
            problem = target.problem or LaunchProblem("LaunchFailed", "the execution cannot run")
            # No retry: another attempt could not run either.
            await self._close_unlaunchable(execution_id, problem.message, problem.error_type, retryable=False)
            return LaunchOutcome.SKIPPED
        try:
            await self._launch(target, target.payload, warm)
        except LaunchError as exc:
            await self._launch_refused(execution_id, str(exc), refusal_closes=refusal_closes)
            return LaunchOutcome.SKIPPED
        RUNNING.inc()
        return LaunchOutcome.LAUNCHED

    def _launch_target(self, execution_id: str) -> LaunchTarget | None:
        row = self._repository.launch_row(execution_id)
        return None if row is None else launch_target(row, self._payload_limits, self._cipher)

    async def _launch(self, target: LaunchTarget, payload: RunPayload, warm: bool) -> None:
        recorded = self._launches[target.execution_id] = asyncio.get_running_loop().create_future()
        record: LaunchRecord | None = None
        try:
            record = await self._launch_and_record(target, payload, warm)
        finally:
            del self._launches[target.execution_id]
            recorded.set_result(record)

    async def _launch_and_record(self, target: LaunchTarget, payload: RunPayload, warm: bool) -> LaunchRecord:
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
            user_id=target.user_id,
            trigger=target.trigger,
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
        record: LaunchRecord = {
            "backend": self._backend.name,
            "runner_ref": self._backend.runner_ref(target.execution_id),
        }
        status = await asyncio.to_thread(
            self._repository.record_launch, target.execution_id, record["backend"], record["runner_ref"]
        )
        if status is ExecutionStatus.CANCELLED:
            await self._backend.kill(target.execution_id)
        DISPATCH_LATENCY.observe((utcnow() - as_utc(target.due_at)).total_seconds())
        return record

    async def _launch_refused(self, execution_id: str, reason: str, *, refusal_closes: bool) -> None:
        if refusal_closes:
            await self._close_unlaunchable(execution_id, reason)
            return
        attempts = await asyncio.to_thread(self._slots.refused, execution_id, self._name, utcnow())
        if attempts < MAX_LAUNCH_ATTEMPTS:
            logger.warning("launch attempt %d of execution %s failed: %s", attempts, execution_id, reason)
            return
        await self._close_unlaunchable(execution_id, f"{reason} (after {attempts} attempts)")

    async def _close_unlaunchable(
        self, execution_id: str, reason: str, error_type: str = "LaunchFailed", *, retryable: bool = True
    ) -> None:
        logger.error("execution %s cannot be launched: %s", execution_id, reason)
        closed = await asyncio.to_thread(
            functools.partial(
                self._repository.close,
                execution_id,
                ExecutionStatus.FAILED,
                error_type=error_type,
                error_message=reason,
                retryable=retryable,
            )
        )
        if closed is not None:
            await self._announce([closed])
