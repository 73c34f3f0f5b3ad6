"""What launching an execution takes: the execution as the dispatcher launches it, and the payload its runner
receives (parameters unsealed, user, organization, limits), or why it cannot run at all."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.engine import RowMapping

from bifrost import OrganizationInfo, UserInfo
from bifrost._internal.protocol import ExecutionStatus, RunPayload
from bifrost.metadata import Resources
from control_plane.executions.sealed_parameters import unseal
from control_plane.security.encryption import SecretCipher, SecretDecryptionError


@dataclass(frozen=True)
class LaunchProblem:
    """Why an execution cannot run at all, as its error."""

    error_type: str
    message: str


@dataclass(frozen=True)
class PayloadLimits:
    """What every runner is told it may send back."""

    max_result_bytes: int
    max_json_depth: int


@dataclass(frozen=True)
class LaunchTarget:
    execution_id: str
    workflow_name: str
    org_id: str | None
    user_id: str
    due_at: datetime
    """When it could first be launched: its creation, or the end of the wait it was given (a retry's backoff)."""
    status: ExecutionStatus
    launched: bool
    resources: Resources | None
    """What the workflow asked for with `@workflow(resources=...)`; None: the backend's defaults."""
    parent_execution_id: str | None
    payload: RunPayload | None
    """What the runner runs; None when it cannot run, because of `problem`."""
    problem: LaunchProblem | None

    @property
    def launchable(self) -> bool:
        return not self.launched and not self.status.is_terminal


def launch_target(row: RowMapping, limits: PayloadLimits, cipher: SecretCipher) -> LaunchTarget:
    """The target of a row read by `ExecutionRepository.launch_row`."""
    payload: RunPayload | None = None
    problem: LaunchProblem | None = None
    opened = _opened_parameters(row, cipher)
    if row["file"] is None:
        problem = LaunchProblem("WorkflowNotFound", f"workflow {row['workflow_name']!r} is not in the registry")
    elif row["user_email"] is None:
        problem = LaunchProblem("UserNotFound", f"the execution's user {row['user_id']!r} no longer exists")
    elif isinstance(opened, LaunchProblem):
        problem = opened
    else:
        parameters, secrets = opened
        payload = RunPayload(
            execution_id=row["id"],
            workflow_name=row["workflow_name"],
            file=row["file"],
            function_name=row["function_name"],
            parameters=parameters,
            secrets=secrets,
            user=UserInfo(id=row["user_id"], email=row["user_email"], name=row["user_name"]),
            organization=OrganizationInfo(id=row["org_id"], name=row["org_name"]) if row["org_name"] else None,
            is_platform_admin=row["is_platform_admin"],
            timeout_seconds=row["timeout_seconds"],
            workspace_revision=row["workspace_revision"],
            parent_execution_id=row["parent_execution_id"],
            max_result_bytes=limits.max_result_bytes,
            max_json_depth=limits.max_json_depth,
        )
    return LaunchTarget(
        execution_id=row["id"],
        workflow_name=row["workflow_name"],
        org_id=row["org_id"],
        user_id=row["user_id"],
        due_at=max(row["created_at"], row["start_after"] or row["created_at"]),
        status=row["status"],
        launched=row["backend"] is not None,
        resources=_workflow_resources(row["meta"]),
        parent_execution_id=row["parent_execution_id"],
        payload=payload,
        problem=problem,
    )


def _opened_parameters(row: RowMapping, cipher: SecretCipher) -> tuple[dict[str, Any], list[str]] | LaunchProblem:
    """The execution's real parameters and the secret values among them."""
    if row["sealed_parameters"] is None:
        return row["parameters"], []
    try:
        return unseal(cipher, row["sealed_parameters"])
    except SecretDecryptionError as exc:
        return LaunchProblem("SecretDecryptionError", f"the secret values among its parameters: {exc}")


def _workflow_resources(meta: Mapping[str, Any] | None) -> Resources | None:
    """The resources the registry recorded in a workflow's `meta`; None for no workflow or none asked for."""
    recorded = (meta or {}).get("resources")
    return Resources.model_validate(recorded) if recorded else None
