"""Retries: an execution of a workflow with `@workflow(retries=...)` that ends `Failed` or `Timeout` is followed by
a new attempt, with the same parameters, user, organization and workspace revision.

The new attempt is recorded in the transaction that ends the failed one, so it is never lost nor made twice
(ending an execution is a compare-and-set, which one transaction wins). It waits, Pending, until its backoff has
passed (`start_after`); then a dispatcher claims and launches it like any other execution, once. Each attempt
names the first (`retry_of`) and its number (`attempt`: 1 for the first, 2 for the first retry, ...).

Not retried: `Cancelled`, `CompletedWithErrors`, a workflow that raised `UserError` (a problem for the person
who started it, which a new attempt would meet again), an execution that cannot run at all (its workflow or user
is gone), sub-workflows, whose failure goes to the parent waiting for them (the parent's own retries apply), and data
provider calls.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, insert, select
from sqlalchemy.engine import Connection

from bifrost._internal.protocol import ExecutionStatus
from bifrost.api.executions import ExecutionKind, Trigger
from bifrost.metadata import RetryPolicy
from control_plane.db.models import as_utc, new_id, utcnow
from control_plane.db.tables import EXECUTIONS, WORKFLOWS

RETRIED_STATUSES = frozenset({ExecutionStatus.FAILED, ExecutionStatus.TIMEOUT})


def record_retry(conn: Connection, execution_id: str, sealed_parameters: str | None) -> str | None:
    """In the transaction that just ended the execution `Failed` or `Timeout` (for a reason a retry may mend):
    record its next attempt when its workflow's retries allow one; the new execution's id, else None.
    `sealed_parameters`: the execution's sealed parameters as they were before it ended."""
    ended = conn.execute(_ENDED_QUERY, {"execution_id": execution_id}).mappings().one_or_none()
    if ended is None:
        return None
    row = next_attempt(ended, _policy(ended["meta"]), sealed_parameters, utcnow())
    if row is None:
        return None
    taken = conn.execute(
        select(EXECUTIONS.c.id).where(EXECUTIONS.c.retry_of == row["retry_of"], EXECUTIONS.c.attempt == row["attempt"])
    ).first()
    if taken is not None:
        return None
    conn.execute(insert(EXECUTIONS), row)
    return str(row["id"])


def next_attempt(
    ended: Mapping[Any, Any], policy: RetryPolicy | None, sealed_parameters: str | None, now: datetime
) -> dict[str, Any] | None:
    """The row of the attempt after `ended` (an `executions` row), or None when none is due."""
    if ended["status"] not in RETRIED_STATUSES or ended["parent_execution_id"] is not None:
        return None
    if ended["kind"] != ExecutionKind.WORKFLOW:
        return None
    retry_number: int = ended["attempt"]  # the attempts so far, each failed: the next one is retry number this
    if policy is None or retry_number > policy.count:
        return None
    ended_at = as_utc(ended["finished_at"]) if ended["finished_at"] is not None else now
    return {
        "id": new_id(),
        "org_id": ended["org_id"],
        "user_id": ended["user_id"],
        "workflow_name": ended["workflow_name"],
        "status": ExecutionStatus.PENDING,
        "parameters": ended["parameters"],
        "sealed_parameters": sealed_parameters,
        "workspace_revision": ended["workspace_revision"],
        "trigger": Trigger.RETRY.value,
        "form_id": ended["form_id"],
        "schedule_id": ended["schedule_id"],
        "serial_key": ended["serial_key"],
        "retry_of": ended["retry_of"] or ended["id"],
        "attempt": retry_number + 1,
        "start_after": ended_at + timedelta(seconds=policy.delay_before(retry_number)),
        "created_at": now,
    }


def _policy(meta: Mapping[str, Any] | None) -> RetryPolicy | None:
    """The retries the registry recorded for the workflow; None for none (or no such workflow any more)."""
    recorded = (meta or {}).get("retries")
    return RetryPolicy.model_validate(recorded) if recorded else None


_ENDED_QUERY = (
    select(
        EXECUTIONS.c.id,
        EXECUTIONS.c.status,
        EXECUTIONS.c.kind,
        EXECUTIONS.c.form_id,
        EXECUTIONS.c.org_id,
        EXECUTIONS.c.user_id,
        EXECUTIONS.c.workflow_name,
        EXECUTIONS.c.parameters,
        EXECUTIONS.c.workspace_revision,
        EXECUTIONS.c.parent_execution_id,
        EXECUTIONS.c.schedule_id,
        EXECUTIONS.c.serial_key,
        EXECUTIONS.c.retry_of,
        EXECUTIONS.c.attempt,
        EXECUTIONS.c.finished_at,
        WORKFLOWS.c.meta,
    )
    .select_from(EXECUTIONS.outerjoin(WORKFLOWS, WORKFLOWS.c.name == EXECUTIONS.c.workflow_name))
    .where(EXECUTIONS.c.id == bindparam("execution_id"))
)
