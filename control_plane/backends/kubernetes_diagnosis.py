"""Why a runner's Job ended or is stuck, from the Job's and the pod's status: a reason a human understands and
the fix to try. Pure functions over the objects as the Kubernetes API returns them (camelCase dicts)."""

from __future__ import annotations

import signal
from dataclasses import dataclass
from typing import Any

from bifrost._internal.protocol import ExecutionStatus, reported_status
from control_plane.backends.kubernetes_spec import RUNNER_CONTAINER

IMAGE_PULL_REASONS = frozenset({"ImagePullBackOff", "ErrImagePull", "InvalidImageName", "ErrImageNeverPull"})
CONTAINER_CONFIG_REASONS = frozenset({"CreateContainerConfigError", "CreateContainerError", "RunContainerError"})
# Pod-level reasons of a pod whose node went away (node lifecycle controller, graceful node shutdown).
NODE_LOST_REASONS = frozenset({"NodeLost", "NodeShutdown", "Shutdown", "Terminated", "UnexpectedAdmissionError"})


@dataclass(frozen=True)
class Diagnosis:
    reason: str
    status: ExecutionStatus | None
    """`Failed` or `Timeout`; None when the runner exited on its own and its events decide."""
    exit_code: int | None = None
    container_ran: bool = False
    """The runner container started, so its log is worth reading."""
    job_active: bool = False
    """The Job would go on without us (a pod stuck before it starts): delete it."""


def condition(obj: dict[str, Any] | None, kind: str) -> dict[str, Any] | None:
    """The condition `kind` of a Job or pod when its status is True (for a pod: any status)."""
    for cond in (obj or {}).get("status", {}).get("conditions") or []:
        if cond.get("type") == kind:
            return dict(cond)
    return None


def _true(cond: dict[str, Any] | None) -> bool:
    return cond is not None and cond.get("status") == "True"


def job_finished(job: dict[str, Any] | None) -> bool:
    return any(_true(condition(job, kind)) for kind in ("Complete", "Failed", "SuccessCriteriaMet", "FailureTarget"))


def runner_state(pod: dict[str, Any] | None) -> dict[str, Any]:
    """The runner container's `state` ({"waiting": ...}, {"running": ...} or {"terminated": ...}), or {}."""
    for status in (pod or {}).get("status", {}).get("containerStatuses") or []:
        if status.get("name") == RUNNER_CONTAINER:
            state: dict[str, Any] = status.get("state") or {}
            return state
    return {}


def pod_started(pod: dict[str, Any] | None) -> bool:
    return (pod or {}).get("status", {}).get("phase") in ("Running", "Succeeded", "Failed")


def pod_name(pod: dict[str, Any] | None) -> str:
    return str((pod or {}).get("metadata", {}).get("name", "(none)"))


def _memory_limit(pod: dict[str, Any] | None) -> str:
    for container in (pod or {}).get("spec", {}).get("containers") or []:
        if container.get("name") == RUNNER_CONTAINER:
            return str(container.get("resources", {}).get("limits", {}).get("memory", "its limit"))
    return "its limit"


def _signal_name(exit_code: int) -> str:
    if exit_code > 128:
        try:
            return f", killed by {signal.Signals(exit_code - 128).name}"
        except ValueError:
            return ""
    return ""


def _stuck_before_start(pod: dict[str, Any]) -> Diagnosis | None:
    waiting = runner_state(pod).get("waiting") or {}
    reason, message = waiting.get("reason", ""), waiting.get("message", "")
    if reason in IMAGE_PULL_REASONS:
        image = next(
            (c.get("image") for c in pod.get("spec", {}).get("containers") or [] if c.get("name") == RUNNER_CONTAINER),
            "?",
        )
        return Diagnosis(
            f"Kubernetes could not pull the runner image {image!r} ({reason}: {message}). Fix: check that the "
            "image and tag exist and that the nodes can reach the registry; for a private registry set "
            "BIFROST_RUNNER_IMAGE_PULL_SECRETS (Helm: runner.imagePullSecrets).",
            ExecutionStatus.FAILED,
            job_active=True,
        )
    if reason in CONTAINER_CONFIG_REASONS:
        return Diagnosis(
            f"Kubernetes could not create the runner container of pod {pod_name(pod)} ({reason}: {message}). "
            "Fix: the runner image must run as a numeric non-root user (BIFROST_K8S_RUN_AS_USER) with a "
            f"read-only root filesystem; `kubectl describe pod {pod_name(pod)}` shows the details.",
            ExecutionStatus.FAILED,
            job_active=True,
        )
    return None


def _failed_pod(job: dict[str, Any], pod: dict[str, Any] | None, pod_gone: bool) -> Diagnosis:
    name = job.get("metadata", {}).get("name", "?")
    job_failed = condition(job, "Failed") or condition(job, "FailureTarget") or {}
    status = (pod or {}).get("status", {})
    terminated = runner_state(pod).get("terminated") or {}
    disruption = condition(pod, "DisruptionTarget")
    reported = reported_status(terminated.get("exitCode"))
    if reported is not None:
        # Not a crash: the Job failed because the workflow did not succeed, which the runner reported itself.
        return Diagnosis(
            f"The runner exited with code {terminated['exitCode']}: it reported the execution {reported}, but the "
            "report did not reach the control plane.",
            None,
            exit_code=int(terminated["exitCode"]),
        )
    if status.get("reason") == "Evicted":
        return Diagnosis(
            f"The runner pod {pod_name(pod)} was evicted: {status.get('message', '')} Fix: the node ran short of "
            "memory or disk; raise the workflow's memory request (or add capacity) and run it again.",
            ExecutionStatus.FAILED,
            container_ran=bool(terminated),
        )
    if terminated.get("reason") == "OOMKilled":
        return Diagnosis(
            f"The runner ran out of memory and was killed at {_memory_limit(pod)} (OOMKilled). Fix: raise the "
            "workflow's memory limit (@workflow(resources={\"memory_limit_mb\": ...})) or BIFROST_K8S_MEMORY_LIMIT_MB.",
            ExecutionStatus.FAILED,
            exit_code=terminated.get("exitCode"),
            container_ran=True,
        )
    if _true(disruption) or status.get("reason") in NODE_LOST_REASONS:
        why = (disruption or {}).get("message") or status.get("message") or status.get("reason", "")
        return Diagnosis(
            f"The node running pod {pod_name(pod)} went away before the runner finished ({why}). Fix: nothing "
            "in the workflow; run it again, and check the node with `kubectl get nodes`.",
            ExecutionStatus.FAILED,
            container_ran=bool(terminated),
        )
    if terminated and terminated.get("exitCode", 0) != 0:
        code = int(terminated["exitCode"])
        return Diagnosis(
            f"The runner exited with code {code}{_signal_name(code)} ({terminated.get('reason', 'Error')}) before "
            "it could report a result. Fix: the log below shows what the runner printed last; a broken runner "
            "image or an unreachable control plane (BIFROST_PUBLIC_URL) or NATS are the usual causes.",
            ExecutionStatus.FAILED,
            exit_code=code,
            container_ran=True,
        )
    if pod is None or pod_gone:
        return Diagnosis(
            f"The Job {name} failed ({job_failed.get('reason', 'Failed')}) and its runner pod "
            f"{pod_name(pod)} is gone: its node was lost or the pod was deleted. Fix: run it again; "
            "`kubectl get events` shows what removed the pod.",
            ExecutionStatus.FAILED,
        )
    return Diagnosis(
        f"The Job {name} failed ({job_failed.get('reason', 'Failed')}: {job_failed.get('message', '')}).",
        ExecutionStatus.FAILED,
        container_ran=bool(terminated),
    )


def diagnose(job: dict[str, Any] | None, pod: dict[str, Any] | None, pod_gone: bool = False) -> Diagnosis | None:
    """The end of an execution's Job, or a pod stuck for good before it started; None while it runs."""
    if job is None:
        return None
    name = job.get("metadata", {}).get("name", "?")
    deadline = condition(job, "Failed")
    if _true(deadline) and (deadline or {}).get("reason") == "DeadlineExceeded":
        seconds = job.get("spec", {}).get("activeDeadlineSeconds")
        return Diagnosis(
            f"The Job {name} ran past its deadline of {seconds}s (the workflow's timeout plus a grace period) and "
            "Kubernetes stopped it. Fix: make the workflow faster or raise its timeout.",
            ExecutionStatus.TIMEOUT,
            container_ran=pod_started(pod),
        )
    if _true(condition(job, "Complete")) or _true(condition(job, "SuccessCriteriaMet")):
        return Diagnosis("The runner exited (code 0) without reporting that the workflow finished.", None, 0)
    if _true(condition(job, "Failed")) or _true(condition(job, "FailureTarget")):
        return _failed_pod(job, pod, pod_gone)
    if pod is not None and not pod_gone:
        return _stuck_before_start(pod)
    return None


def diagnose_pending(job: str, pod: dict[str, Any] | None, waited: float) -> Diagnosis:
    """An execution whose pod did not start within the pending timeout."""
    if pod is None:
        return Diagnosis(
            f"No runner pod was created for Job {job} in {waited:.0f}s. Fix: `kubectl describe job {job}` shows "
            "why (a ResourceQuota or an admission webhook refusing the pod are common causes).",
            ExecutionStatus.FAILED,
            job_active=True,
        )
    scheduled = condition(pod, "PodScheduled") or {}
    if scheduled.get("status") == "False" and scheduled.get("reason") == "Unschedulable":
        return Diagnosis(
            f"The scheduler could not place the runner pod {pod_name(pod)} in {waited:.0f}s: "
            f"{scheduled.get('message', '')} Fix: add capacity or lower the workflow's resource requests, and "
            "check BIFROST_K8S_NODE_SELECTOR and BIFROST_K8S_TOLERATIONS against the nodes' labels and taints.",
            ExecutionStatus.FAILED,
            job_active=True,
        )
    waiting = runner_state(pod).get("waiting") or {}
    detail = f" ({waiting.get('reason')}: {waiting.get('message', '')})" if waiting.get("reason") else ""
    return Diagnosis(
        f"The runner pod {pod_name(pod)} was still Pending after {waited:.0f}s{detail}. Fix: "
        f"`kubectl describe pod {pod_name(pod)}` shows what it waits for; raise "
        "BIFROST_K8S_PENDING_TIMEOUT_SECONDS if the cluster is just slow to start pods.",
        ExecutionStatus.FAILED,
        job_active=True,
    )


def job_deleted(job: str) -> Diagnosis:
    return Diagnosis(
        f"The Job {job} was deleted from outside Bifrost before the runner reported (kubectl delete?). Fix: "
        "cancel executions through Bifrost; run this one again.",
        ExecutionStatus.FAILED,
    )


def job_vanished(job: str) -> Diagnosis:
    return Diagnosis(
        f"The Job {job} no longer exists: it was deleted (or removed by its TTL) while the control plane was not "
        "watching, before the runner reported. Fix: run the execution again.",
        ExecutionStatus.FAILED,
    )
