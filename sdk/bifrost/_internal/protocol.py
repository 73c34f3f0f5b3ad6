"""The wire contract between runners and the control plane.

Runners publish events on NATS JetStream; the control plane ingests them. Both sides import these models, so
a field added here is seen by both at once.
"""

from __future__ import annotations

import enum
import os
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, TypeAdapter

from bifrost.context import OrganizationInfo, UserInfo

EVENTS_STREAM = "BIFROST_EVENTS"
QUEUE_STREAM = "BIFROST_QUEUE"
QUEUE_SUBJECT = "bifrost.queue.executions"
EVENTS_SUBJECT_WILDCARD = "bifrost.runs.*.events"
# The largest event message: a result of up to `RunPayload.max_result_bytes` plus its envelope. The events
# stream accepts messages up to this size, and the embedded nats-server is started with it as max_payload
# (an external server needs `max_payload` at least this large for results near the limit).
MAX_EVENT_BYTES = 16 * 1024 * 1024


def events_subject(execution_id: str) -> str:
    return f"bifrost.runs.{execution_id}.events"


def control_subject(execution_id: str) -> str:
    return f"bifrost.runs.{execution_id}.control"


def pool_subject(runner_name: str) -> str:
    """Where one waiting runner (a Kubernetes pool pod) receives its claim: its pool identity alone may subscribe."""
    return f"bifrost.pool.{runner_name}.claim"


def inbox_prefix(execution_id: str) -> str:
    """Where a runner receives replies (JetStream's acknowledgements): its NATS identity may subscribe here."""
    return f"bifrost.runs.{execution_id}.inbox"


def nats_credentials_file(jwt: str, seed: str) -> str:
    """A NATS user's JWT and nkey seed in the `.creds` file format NATS clients read."""
    return (
        f"-----BEGIN NATS USER JWT-----\n{jwt}\n------END NATS USER JWT------\n\n"
        f"-----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n"
    )


def message_id(execution_id: str, seq: int) -> str:
    """The `Nats-Msg-Id` of one event: JetStream drops a second publish with the same id."""
    return f"{execution_id}:{seq}"


class ExecutionStatus(enum.StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    SUCCESS = "Success"
    COMPLETED_WITH_ERRORS = "CompletedWithErrors"
    FAILED = "Failed"
    TIMEOUT = "Timeout"
    CANCELLED = "Cancelled"

    @property
    def is_terminal(self) -> bool:
        return self not in (ExecutionStatus.PENDING, ExecutionStatus.RUNNING)


RUNNER_EXIT_CODES = {
    ExecutionStatus.SUCCESS: 0,
    ExecutionStatus.COMPLETED_WITH_ERRORS: 10,
    ExecutionStatus.FAILED: 11,
    ExecutionStatus.TIMEOUT: 12,
    ExecutionStatus.CANCELLED: 13,
}
"""How a runner exits once NATS stored its `finished` event, by the final status it reported: 0 for Success only,
so that the containers and Jobs of runs that did not succeed show as failed. The others are codes that neither
Python nor the usual conventions (sysexits, signals) give a meaning, so that a crash is not taken for a report."""
RUNNER_EXIT_UNREPORTED = 1
"""The runner could not report how the execution ended (NATS unreachable, its events not acknowledged); also the
exit code of a runner that crashed."""
RUNNER_EXIT_BAD_CONFIG = 2
"""The runner's configuration (its environment) is incomplete or malformed."""
_REPORTED_STATUSES = {code: status for status, code in RUNNER_EXIT_CODES.items()}


def reported_status(exit_code: int | None) -> ExecutionStatus | None:
    """The final status a runner that exited with `exit_code` reported; None when its exit code says nothing of one
    (0 is left out too: any process that ends normally exits with it)."""
    return None if not exit_code else _REPORTED_STATUSES.get(exit_code)


def _now() -> datetime:
    return datetime.now(UTC)


class _EventBase(BaseModel):
    execution_id: str
    seq: int = Field(ge=1, description="Per-execution sequence number, starting at 1, without gaps.")
    ts: datetime = Field(default_factory=_now)


class StartedEvent(_EventBase):
    type: Literal["started"] = "started"
    pid: int | None = None
    hostname: str | None = None
    workspace_revision: str | None = None
    sync_seconds: float | None = None


class LogRecord(BaseModel):
    ts: datetime
    level: str
    logger: str
    message: str


class LogEvent(_EventBase):
    type: Literal["log"] = "log"
    records: list[LogRecord]
    dropped: int = Field(0, description="Records dropped by the runner's hard cap before this batch.")


class VariablesEvent(_EventBase):
    type: Literal["variables"] = "variables"
    variables: dict[str, Any]


class ResultEvent(_EventBase):
    type: Literal["result"] = "result"
    result: Any


class FinishedEvent(_EventBase):
    type: Literal["finished"] = "finished"
    status: ExecutionStatus
    error_type: str | None = None
    error_message: str | None = None
    traceback: str | None = None
    duration_ms: float | None = None
    user_error: bool = False
    """The workflow raised `UserError`: a problem for whoever started it, which a retry would meet again."""


Event = Annotated[
    StartedEvent | LogEvent | VariablesEvent | ResultEvent | FinishedEvent,
    Field(discriminator="type"),
]
_event_adapter: TypeAdapter[Event] = TypeAdapter(Event)


def parse_event(data: bytes | str) -> Event:
    return _event_adapter.validate_json(data)


class CancelRequest(BaseModel):
    """Published on the control subject to cancel a running workflow."""

    type: Literal["cancel"] = "cancel"
    reason: str = "Cancelled by user"


class RunPayload(BaseModel):
    """What a runner fetches from the control plane with its execution token before it starts."""

    execution_id: str
    workflow_name: str
    file: str = Field(description="Path of the workflow's module, relative to the workspace root.")
    function_name: str
    parameters: dict[str, Any]
    user: UserInfo
    organization: OrganizationInfo | None
    is_platform_admin: bool = False
    timeout_seconds: int
    workspace_revision: str | None = None
    parent_execution_id: str | None = None
    max_result_bytes: int = 10 * 1024 * 1024
    max_json_depth: int = Field(64, description="Nesting kept in the result and variables; deeper is cut.")
    secrets: list[str] = Field(
        default_factory=list,
        description="Secret values among the parameters, passed on by the parent run: masked in what the run "
        "outputs, as the secrets it reads itself.",
    )


# The local backend's runner template (`python -m bifrost_runner.zygote`) reads framed lines on its stdin: a
# header it reads (`SlotHeader`, `ClaimHeader`, `ForkMoved`), a tab, and a body it passes on to a runner unread
# (`RunnerSlot`, `RunnerClaim`; none after `ForkMoved`): the bodies hold the executions' secrets, which the template
# never holds in memory its later forks would inherit. It writes `TemplateStarted` once, then one `ForkMade` /
# `RunnerForked` / `RunnerEnded` / `RunnerForkFailed` / `SlotDropped` per line on its stdout. A runner reads the
# bodies, one per line.


class RunnerSlot(BaseModel):
    """An execution id chosen before its execution exists, with the NATS identity its runner will have: a spare
    runner given the slot connects to NATS with it while it waits, so that the execution created with this id
    starts on a runner that is connected already. The template keeps spares that hold no slot besides, for the
    other executions. The identity is that execution's own (it may publish only its events and receive only its
    control messages) and expires `expires_at`; the spare is replaced well before (`SLOT_RETIRED_AT`), and a
    runner still running then switches to the identity of its claim (`SLOT_LEFT_AT`)."""

    type: Literal["slot"] = "slot"
    execution_id: str
    nats_url: str
    nats_jwt: str | None = Field(None, repr=False, description="None: NATS checks no identities.")
    nats_seed: str | None = Field(None, repr=False)
    issued_at: float = Field(description="When the identity was made (Unix time).")
    expires_at: float = Field(description="When NATS stops taking the identity (Unix time).")

    def moment(self, fraction: float) -> float:
        """The time `fraction` of the identity's lifetime after it was made (Unix time)."""
        return self.issued_at + fraction * (self.expires_at - self.issued_at)


SLOT_RESERVED_UNTIL = 0.5
"""Of a slot's lifetime: after this much, no new execution is given its id."""
SLOT_RETIRED_AT = 0.6
"""Of a slot's lifetime: a spare still waiting with it then is ended, and another one made."""
SLOT_LEFT_AT = 0.8
"""Of a slot's lifetime: a runner still running on the slot's connection then reconnects under its claim's
identity."""


class RunnerClaim(BaseModel):
    """Start the runner of one execution, with exactly this environment."""

    type: Literal["claim"] = "claim"
    execution_id: str
    env: dict[str, str]
    log_path: str = Field(description="The runner's stdout and stderr go to this file.")
    memory_limit_bytes: int | None = None
    cpu_limit_seconds: int | None = None
    max_processes: int | None = Field(None, description="Processes and threads the runner may have at once.")
    payload: RunPayload | None = Field(None, description="The execution's payload; None: the runner fetches it.")


class PoolClaim(BaseModel):
    """The one execution a waiting pool runner runs: its environment (token, NATS identity, ...) and payload. It
    goes to the runner over NATS, never into the pod's spec."""

    env: dict[str, str]
    payload: RunPayload | None = None


RunnerMessage = Annotated[RunnerSlot | RunnerClaim, Field(discriminator="type")]
runner_message_adapter: TypeAdapter[RunnerMessage] = TypeAdapter(RunnerMessage)


class SlotHeader(BaseModel):
    """What the template reads of a `RunnerSlot`: give it to a spare, and end that spare at `retire_at`."""

    type: Literal["slot"] = "slot"
    execution_id: str
    retire_at: float = Field(description="Unix time.")


class ClaimHeader(BaseModel):
    """What the template reads of a `RunnerClaim`. The spare holding the execution's slot serves it, else one
    holding none: a spare holding a slot waits for that slot's execution alone."""

    type: Literal["claim"] = "claim"
    execution_id: str
    api_url: str | None = Field(None, description="Where the runner calls the API: the next spares prepare for it.")
    log_folder: str = Field(description="Where the runner logs: the next spares make their log file there.")


class ForkMoved(BaseModel):
    """The fork `pid` (of a `ForkMade`) is in its cgroup: a template that waits for this before it hands a fork its
    claim (`--claims-once-moved`) may hand it one now."""

    type: Literal["fork_moved"] = "fork_moved"
    pid: int = Field(description="As `ForkMade` gave it.")


TemplateHeader = Annotated[SlotHeader | ClaimHeader | ForkMoved, Field(discriminator="type")]
template_header_adapter: TypeAdapter[TemplateHeader] = TypeAdapter(TemplateHeader)


def claim_line(claim: RunnerClaim) -> bytes:
    """The template's input line of `claim`. (JSON holds no raw tab or newline.)"""
    header = ClaimHeader(
        execution_id=claim.execution_id,
        api_url=claim.env.get("BIFROST_API_URL"),
        log_folder=os.path.dirname(claim.log_path),
    )
    return header.model_dump_json().encode() + b"\t" + claim.model_dump_json().encode() + b"\n"


def fork_moved_line(pid: int) -> bytes:
    """The template's input line telling that the fork `pid` is in its cgroup."""
    return ForkMoved(pid=pid).model_dump_json().encode() + b"\t\n"


def slot_line(slot: RunnerSlot) -> bytes:
    """The template's input line of `slot`."""
    header = SlotHeader(execution_id=slot.execution_id, retire_at=slot.moment(SLOT_RETIRED_AT))
    return header.model_dump_json().encode() + b"\t" + slot.model_dump_json().encode() + b"\n"


class TemplateStarted(BaseModel):
    """The template's first message."""

    type: Literal["template_started"] = "template_started"
    pid: int = Field(description="The template's own pid (in its PID namespace).")


class ForkMade(BaseModel):
    """A fork was made and waits for its claim: while it surely lives, the backend can find it by its pid."""

    type: Literal["fork_made"] = "fork_made"
    pid: int


class RunnerForked(BaseModel):
    type: Literal["forked"] = "forked"
    execution_id: str
    pid: int


class RunnerEnded(BaseModel):
    type: Literal["ended"] = "ended"
    execution_id: str
    pid: int
    exit_code: int | None = Field(description="Set when the runner exited by itself.")
    signal: int | None = Field(description="Set when a signal killed the runner.")
    memory_limit_reached: bool = Field(
        False, description="The runner ended with its address space at its memory limit (confined runners only)."
    )


class RunnerForkFailed(BaseModel):
    type: Literal["fork_failed"] = "fork_failed"
    execution_id: str
    error: str


class SlotDropped(BaseModel):
    """A slot no runner will use, though no claim came for it: its spare was retired or died, or its lifetime ran
    out before a spare took it."""

    type: Literal["slot_dropped"] = "slot_dropped"
    execution_id: str


TemplateMessage = Annotated[
    TemplateStarted | ForkMade | RunnerForked | RunnerEnded | RunnerForkFailed | SlotDropped,
    Field(discriminator="type"),
]
template_message_adapter: TypeAdapter[TemplateMessage] = TypeAdapter(TemplateMessage)
