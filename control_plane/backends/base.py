"""The one interface every execution backend implements (local processes, containers, Kubernetes Jobs)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable

from nats.aio.client import Client as NatsClient
from pydantic import BaseModel, Field

from bifrost._internal.protocol import ExecutionStatus, RunPayload
from bifrost.api.executions import RunnerDetails as RunnerDetails  # what a backend tells of a runner
from bifrost.metadata import CPU_QUANTITY, Resources
from control_plane.security.nats_identities import AccountSigner, NatsCredentials
from control_plane.settings import Settings


class RunnerResources(BaseModel):
    """Per-workflow resources of a runner (from the `@workflow` decorator); unset fields keep the defaults."""

    cpu_request: str | None = Field(None, pattern=CPU_QUANTITY, description="CPU cores or millicores: 0.5, 250m.")
    cpu_limit: str | None = Field(None, pattern=CPU_QUANTITY)
    memory_request_mb: int | None = Field(None, ge=16)
    memory_limit_mb: int | None = Field(None, ge=16)

    @classmethod
    def of_workflow(cls, resources: Resources | None) -> RunnerResources | None:
        """The runner resources a workflow asked for with `@workflow(resources=...)`; None when it asked for none."""
        return None if resources is None else cls.model_validate(resources.model_dump())


class RunnerWorkspace(BaseModel):
    """Where a runner syncs its execution's workspace revision from, with read-only access and nothing more."""

    url: str = Field(description="A folder the runner can see, file:///… or s3://bucket/prefix.")
    s3_endpoint_url: str | None = None
    s3_access_key_id: str | None = None
    s3_secret_access_key: str | None = Field(None, repr=False)
    s3_region: str | None = None
    cache_dir: str | None = Field(None, description="The runner's revision cache; None: the runner's default.")

    @classmethod
    def from_settings(cls, settings: Settings) -> RunnerWorkspace:
        """The workspace as the runners see it: a folder by its absolute path, or the bucket with the runner's
        own read-only credentials (never the control plane's)."""
        secret = settings.s3_runner_secret_access_key
        return cls(
            url=str(settings.workspace_dir) if settings.workspace_dir is not None else settings.workspace_url,
            s3_endpoint_url=settings.s3_endpoint_url,
            s3_access_key_id=settings.s3_runner_access_key_id,
            s3_secret_access_key=secret.get_secret_value() if secret else None,
            s3_region=settings.s3_region,
            cache_dir=settings.runner_workspace_cache_dir,
        )

    def runner_env(self) -> dict[str, str]:
        optional = {
            "BIFROST_S3_ENDPOINT_URL": self.s3_endpoint_url,
            "BIFROST_S3_ACCESS_KEY_ID": self.s3_access_key_id,
            "BIFROST_S3_SECRET_ACCESS_KEY": self.s3_secret_access_key,
            "BIFROST_S3_REGION": self.s3_region,
            "BIFROST_WORKSPACE_CACHE_DIR": self.cache_dir,
        }
        return {"BIFROST_WORKSPACE_URL": self.url} | {name: value for name, value in optional.items() if value}


class LaunchSpec(BaseModel):
    """Everything a backend needs to start the runner of one execution.

    Parameters never go into the runner's environment, a process table or a Job spec: a backend either hands
    `payload` to its runner directly (the local backend, over its template's pipe, saving the runner a request)
    or leaves the runner to fetch it from the control plane with its token."""

    execution_id: str
    workflow_name: str
    org_id: str | None
    user_id: str | None = Field(None, description="Who started the execution (shown on the runner's labels).")
    trigger: str | None = Field(None, description="How it was started, a `Trigger` value (shown likewise).")
    token: str
    timeout_seconds: int
    api_url: str
    nats_url: str
    nats_credentials: NatsCredentials | None = Field(
        None, description="The runner's own NATS identity; None when NATS does not check identities."
    )
    workspace_dir: str | None = Field(
        None, description="A workspace folder the runner can see, its source when `workspace` is not given."
    )
    workspace: RunnerWorkspace | None = Field(None, description="Where the runner syncs the workspace from.")
    memory_limit_mb: int | None = None
    resources: RunnerResources | None = Field(
        None, description="The workflow's own resource requests/limits; None: the backend's defaults."
    )
    payload: RunPayload | None = Field(None, description="What the runner runs, for backends that hand it over.")
    report_seconds: float | None = Field(
        None, description="How long the runner waits for NATS to take its last events; None: the runner's default."
    )
    warm: bool = Field(False, description="A sync run: a runner already waiting (a pool pod) may take it.")

    def runner_env(self) -> dict[str, str]:
        """The runner's whole configuration, as environment variables (see `bifrost_runner.config`)."""
        env = {
            "BIFROST_EXECUTION_ID": self.execution_id,
            "BIFROST_EXECUTION_TOKEN": self.token,
            "BIFROST_API_URL": self.api_url,
            "BIFROST_NATS_URL": self.nats_url,
            "BIFROST_TIMEOUT_SECONDS": str(self.timeout_seconds),
        }
        if self.nats_credentials is not None:
            env["BIFROST_NATS_JWT"] = self.nats_credentials.jwt
            env["BIFROST_NATS_SEED"] = self.nats_credentials.seed
        if self.workspace_dir is not None:
            env["BIFROST_WORKSPACE_DIR"] = self.workspace_dir
        if self.workspace is not None:
            env |= self.workspace.runner_env()
        if self.report_seconds is not None:
            env["BIFROST_REPORT_SECONDS"] = f"{self.report_seconds:g}"
        return env


class RunnerExit(BaseModel):
    """A runner is gone. The control plane closes the execution with `reason` if no `finished` event
    arrives for it shortly after."""

    execution_id: str
    exit_code: int | None
    reason: str
    status: ExecutionStatus | None = Field(
        None,
        description="The status to close with (`Timeout` for a deadline, `Cancelled` for a run deleted in the "
        "cluster); None: `Failed` unless reported.",
    )
    log_tail: str | None = Field(None, description="The last lines the runner printed, when it failed.")


class Diagnosed(Protocol):
    """What a backend concluded of a runner that ended without reporting its end."""

    @property
    def reason(self) -> str: ...
    @property
    def status(self) -> ExecutionStatus | None: ...
    @property
    def exit_code(self) -> int | None: ...


def diagnosed_exit(execution_id: str, diagnosis: Diagnosed, log_tail: str | None = None) -> RunnerExit:
    """The end of a runner as `diagnosis` tells it, with the last lines of its log when they were read."""
    reason = diagnosis.reason
    if log_tail:
        reason = f"{reason}\n\nLast lines of the runner's log:\n{log_tail.rstrip()}"
    return RunnerExit(
        execution_id=execution_id,
        exit_code=diagnosis.exit_code,
        reason=reason,
        status=diagnosis.status,
        log_tail=log_tail,
    )


class RunEnd(BaseModel):
    """How an execution a backend ran ended, as the control plane recorded it."""

    execution_id: str
    status: ExecutionStatus
    error_message: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None


ExitCallback = Callable[[RunnerExit], Awaitable[None]]


@dataclass
class ClaimChannel:
    """NATS as the control plane reaches it, for backends whose waiting runners receive their claim over it."""

    nats: NatsClient
    nats_url: str
    """NATS as runners reach it."""
    signer: AccountSigner | None
    """Mints waiting runners' identities; None when NATS does not check identities."""


class Backend(Protocol):
    name: str

    async def start(self, on_exit: ExitCallback, claims: ClaimChannel | None = None) -> None:
        """Begin serving launches; `on_exit` is called once for every runner that ends, however it ends. `claims`:
        how to reach runners waiting for a claim (see `ClaimChannel`); None: no runner waits for one."""

    async def stop(self) -> None:
        """Stop launching; runners already running are left to finish."""

    async def launch(self, spec: LaunchSpec) -> None:
        """Start the runner of `spec.execution_id`. Idempotent: a second call for the same id is a no-op."""

    async def kill(self, execution_id: str) -> None:
        """Terminate what is left of a runner (after the cancel grace period, or on timeout)."""

    def runner_ref(self, execution_id: str) -> str | None:
        """The backend's handle on the runner it launched for `execution_id` (a pid, a Job name); None when it
        has none."""

    def details(self, execution_id: str) -> RunnerDetails | None:
        """More about where the runner of `execution_id` is; None when the backend has nothing to add."""

    async def run_ended(self, end: RunEnd) -> None:
        """An execution this backend ran ended (committed by this replica): a backend whose runs show elsewhere
        (Kubernetes Jobs and WorkflowRuns) writes it there. Never raises."""

    async def reconcile(self, active_execution_ids: list[str]) -> None:
        """After a control-plane restart: re-attach to the runners of these still-active executions, and
        report (via `on_exit`) those whose runner no longer exists."""


@runtime_checkable
class ReadiesRunners(Protocol):
    """A backend that has runners wait connected to NATS, each under the identity of an execution that does not
    exist yet: an execution created with one of those ids starts on its runner without connecting."""

    def connect_runners_to(self, nats_url: str, signer: AccountSigner | None) -> None:
        """Where ready runners connect, and who mints their identities (None: NATS checks none). Called before
        `start`."""

    def ready_execution_id(self) -> str | None:
        """An id for a new execution whose runner waits connected, given out once; None when there is none."""
