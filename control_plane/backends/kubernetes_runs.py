"""The `WorkflowRun` custom resource (group `bifrost.io`): one per execution in the runner namespace, owned by
nothing and owning the execution's Job, so that `kubectl get workflowruns` lists the runs with their workflow,
status, organization, user, start and duration, and `kubectl delete workflowrun` cancels one.

An ended run's WorkflowRun is deleted `k8s_workflow_run_ttl_seconds` after the run finished.

Its CRD ships with the Helm chart (`helm/bifrost/crds/`) and `k8s/`. Where it is not installed, the backend runs
the Jobs alone (see `WorkflowRuns.available`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from control_plane.backends.base import LaunchSpec
from control_plane.backends.kubernetes_spec import (
    ERROR_ANNOTATION_MAX,
    job_name,
    runner_annotations,
    runner_labels,
)
from control_plane.settings import Settings

GROUP = "bifrost.io"
VERSION = "v1alpha1"
PLURAL = "workflowruns"
KIND = "WorkflowRun"
API_VERSION = f"{GROUP}/{VERSION}"
TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def build_workflow_run(spec: LaunchSpec, settings: Settings) -> dict[str, Any]:
    """The execution's WorkflowRun, Pending; named as its Job is, with the same labels and annotations."""
    facts = {"user": spec.user_id, "trigger": spec.trigger}
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {
            "name": job_name(spec.execution_id),
            "namespace": settings.k8s_namespace,
            "labels": runner_labels(spec),
            "annotations": runner_annotations(spec),
        },
        "spec": {
            "executionId": spec.execution_id,
            "workflow": spec.workflow_name,
            "org": spec.org_id or "global",
            "jobName": job_name(spec.execution_id),
        }
        | {key: value for key, value in facts.items() if value},
        "status": {"phase": "Pending"},
    }


def owner_reference(workflow_run: dict[str, Any]) -> dict[str, Any]:
    """The reference that makes a Job belong to its WorkflowRun: deleting the run deletes the Job."""
    metadata = workflow_run["metadata"]
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": metadata["name"],
        "uid": metadata["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _timestamp(moment: datetime) -> str:
    return moment.strftime(TIMESTAMP_FORMAT)


def duration_text(seconds: float) -> str:
    """A duration as kubectl writes one: 45s, 3m7s, 2h5m, 3d4h."""
    total = max(0, round(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h{minutes}m" if minutes else f"{hours}h"
    if minutes:
        return f"{minutes}m{secs}s" if secs else f"{minutes}m"
    return f"{secs}s"


def started_patch(started_at: str) -> dict[str, Any]:
    """The run's pod started (at the pod's own start time, as the API server wrote it)."""
    return {"status": {"phase": "Running", "startedAt": started_at}}


def ended_patch(
    status: str, error_message: str | None, started_at: datetime | None, finished_at: datetime | None
) -> dict[str, Any]:
    """The run's end: its final status, when it started and ended, how long it took, its error message."""
    written: dict[str, Any] = {"phase": status, "message": None}
    if error_message:
        message = error_message
        if len(message) > ERROR_ANNOTATION_MAX:
            message = f"{message[: ERROR_ANNOTATION_MAX - 1]}…"
        written["message"] = message
    if started_at is not None:
        written["startedAt"] = _timestamp(started_at)
    if finished_at is not None:
        written["finishedAt"] = _timestamp(finished_at)
    if started_at is not None and finished_at is not None:
        written["duration"] = duration_text((finished_at - started_at).total_seconds())
    return {"status": written}


def finished_at(workflow_run: dict[str, Any]) -> datetime | None:
    """When the WorkflowRun's run finished, as `ended_patch` wrote it; None while it runs."""
    written = workflow_run.get("status", {}).get("finishedAt")
    if not written:
        return None
    return datetime.strptime(written, TIMESTAMP_FORMAT).replace(tzinfo=UTC)


def being_deleted(workflow_run: dict[str, Any]) -> bool:
    """Whether the WorkflowRun is on its way out (a foreground deletion waits for what it owns)."""
    return bool(workflow_run.get("metadata", {}).get("deletionTimestamp"))
