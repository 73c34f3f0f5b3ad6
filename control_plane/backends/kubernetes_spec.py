"""The Kubernetes objects of one execution: its Job (the runner's pod template) and its token Secret.

Names and labels are derived from the execution id alone, so a second launch of the same execution finds the
first one's Job. Label values must be valid label values (63 characters at most, alphanumerics and `-_.`,
beginning and ending alphanumeric): a value that is not one is cut to a readable part plus a hash of the whole
(`label_value`), and the exact values go into annotations of the same keys.
"""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Any

from bifrost.metadata import millicores
from control_plane.backends.base import LaunchSpec, RunnerResources
from control_plane.settings import Settings

MANAGED_BY = "bifrost"
EXECUTION_ID = "bifrost.io/execution-id"
WORKFLOW = "bifrost.io/workflow"
ORG = "bifrost.io/org"
USER = "bifrost.io/user"
TRIGGER = "bifrost.io/trigger"
STATUS = "bifrost.io/status"
"""The final status, written onto the Job when the execution ends."""
ERROR = "bifrost.io/error"
"""The annotation with the error message of an execution that did not succeed."""
ERROR_ANNOTATION_MAX = 4096
"""Characters of the error message kept in the annotation; the whole message stays in Bifrost."""
POOL = "bifrost.io/pool"
"""On a pool pod's Job and pod: the pool it was made for (it keeps it once it took an execution)."""
# Every object of ours carries these; the shared watch and the reconciliation select on them.
MANAGED_SELECTOR = f"app.kubernetes.io/managed-by={MANAGED_BY}"
RUNNER_CONTAINER = "runner"
WORKSPACE_MOUNT = "/workspace"
"""The runner's emptyDir, where it caches the workspace revisions it syncs."""
JOB_NAME_PREFIX = "bifrost-run-"
# Environment variables whose values are credentials: they go into the execution's Secret, never the Job.
_CREDENTIAL_MARKERS = ("TOKEN", "SECRET", "PASSWORD", "NATS_JWT", "NATS_SEED")

_LABEL_MAX = 63
_NOT_LABEL_CHARS = re.compile(r"[^A-Za-z0-9._-]+")
_NOT_NAME_CHARS = re.compile(r"[^a-z0-9-]+")


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def label_value(text: str) -> str:
    """`text` as a valid label value: itself when it already is one, else a readable part plus a hash."""
    safe = _NOT_LABEL_CHARS.sub("-", text).strip("-_.")
    if safe == text and len(safe) <= _LABEL_MAX:
        return text
    return f"{safe[: _LABEL_MAX - 11].rstrip('-_.')}-{_digest(text)}".lstrip("-")


def job_name(execution_id: str) -> str:
    """The Job's name: a DNS label derived from the execution id only (the launch idempotency key)."""
    safe = _NOT_NAME_CHARS.sub("-", execution_id.lower()).strip("-")
    name = f"{JOB_NAME_PREFIX}{safe}"
    # The job controller puts the Job's name into a pod label, so it must stay a label (63 characters).
    if safe == execution_id and len(name) <= _LABEL_MAX:
        return name
    return f"{name[: _LABEL_MAX - 11].rstrip('-')}-{_digest(execution_id)}"


def secret_name(execution_id: str) -> str:
    return f"{job_name(execution_id)}-token"


def inspect_commands(namespace: str, job: str) -> list[str]:
    """The kubectl commands that show an execution's Job, its pod and its logs."""
    return [
        f"kubectl -n {namespace} get job {job}",
        f"kubectl -n {namespace} describe job {job}",
        f"kubectl -n {namespace} get pods -l job-name={job}",
        f"kubectl -n {namespace} logs job/{job}",
    ]


def runner_labels(spec: LaunchSpec) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "bifrost-runner",
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "app.kubernetes.io/part-of": "bifrost",
        EXECUTION_ID: label_value(spec.execution_id),
        WORKFLOW: label_value(spec.workflow_name),
        ORG: label_value(spec.org_id or "global"),
    } | {key: label_value(value) for key, value in _optional_facts(spec).items()}


def runner_annotations(spec: LaunchSpec) -> dict[str, str]:
    exact = {EXECUTION_ID: spec.execution_id, WORKFLOW: spec.workflow_name, ORG: spec.org_id or "global"}
    return exact | _optional_facts(spec)


def _optional_facts(spec: LaunchSpec) -> dict[str, str]:
    facts = {USER: spec.user_id, TRIGGER: spec.trigger}
    return {key: value for key, value in facts.items() if value}


def ended_patch(status: str, error_message: str | None) -> dict[str, Any]:
    """The merge patch that writes an execution's end onto its Job: the status label, the error annotation."""
    error = None
    if error_message:
        error = error_message
        if len(error) > ERROR_ANNOTATION_MAX:
            error = f"{error[: ERROR_ANNOTATION_MAX - 1]}…"
    return {"metadata": {"labels": {STATUS: label_value(status)}, "annotations": {ERROR: error}}}


def execution_id_of(obj: dict[str, Any]) -> str | None:
    """The execution a Job, pod or Secret of ours belongs to (from the exact annotation)."""
    annotations: dict[str, str] = obj.get("metadata", {}).get("annotations") or {}
    return annotations.get(EXECUTION_ID)


def is_credential(env_name: str) -> bool:
    return any(marker in env_name for marker in _CREDENTIAL_MARKERS)


def _resources(
    resources: RunnerResources | None, memory_limit_mb: int | None, settings: Settings
) -> dict[str, dict[str, str]]:
    """Requests and limits: the workflow's own, else the defaults; a limit is raised to at least its request."""
    wanted = resources or RunnerResources()
    memory_request = wanted.memory_request_mb or settings.k8s_memory_request_mb
    memory_limit = wanted.memory_limit_mb or memory_limit_mb or settings.k8s_memory_limit_mb
    cpu_request = wanted.cpu_request or settings.k8s_cpu_request
    cpu_limit = wanted.cpu_limit or settings.k8s_cpu_limit
    if wanted.memory_limit_mb or memory_limit_mb:
        memory_request = min(memory_request, memory_limit)
    limits = {"memory": f"{max(memory_request, memory_limit)}Mi"}
    if cpu_limit is not None:
        limits["cpu"] = max(cpu_limit, cpu_request, key=millicores)
    return {"requests": {"cpu": cpu_request, "memory": f"{memory_request}Mi"}, "limits": limits}


def pod_resources(
    resources: RunnerResources | None, memory_limit_mb: int | None, settings: Settings
) -> tuple[float, float | None, int, int]:
    """The requests and limits a runner pod of `resources` gets, as numbers (CPU in millicores, memory in MiB):
    equal for two pods that get the same, however their CPU is written."""
    given = _resources(resources, memory_limit_mb, settings)
    cpu_limit = given["limits"].get("cpu")
    return (
        millicores(given["requests"]["cpu"]),
        None if cpu_limit is None else millicores(cpu_limit),
        int(given["requests"]["memory"].removesuffix("Mi")),
        int(given["limits"]["memory"].removesuffix("Mi")),
    )


def _env(spec: LaunchSpec) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        {"name": "PYTHONUNBUFFERED", "value": "1"},
        {"name": "HOME", "value": "/tmp"},
    ]
    # The cache is the pod's own volume: a cache folder of the control plane's means nothing in a pod.
    runner_env = spec.runner_env() | {"BIFROST_WORKSPACE_CACHE_DIR": WORKSPACE_MOUNT}
    for name, value in runner_env.items():
        if is_credential(name):
            ref = {"name": secret_name(spec.execution_id), "key": name}
            env.append({"name": name, "valueFrom": {"secretKeyRef": ref}})
        else:
            env.append({"name": name, "value": value})
    return env


def _pod_spec(settings: Settings, module: str, env: list[dict[str, Any]], resources: dict[str, Any]) -> dict[str, Any]:
    """A runner pod running `python -m <module>`."""
    uid = settings.k8s_run_as_user
    container: dict[str, Any] = {
        "name": RUNNER_CONTAINER,
        "image": settings.runner_image,
        "imagePullPolicy": settings.runner_image_pull_policy,
        "command": ["python", "-m", module],
        "env": env,
        "resources": resources,
        "volumeMounts": [
            {"name": "workspace", "mountPath": WORKSPACE_MOUNT},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
        # The end of the log becomes the termination message of a crashed runner: it survives the pod's logs.
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": uid,
            "runAsGroup": uid,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": uid,
            "runAsGroup": uid,
            "fsGroup": uid,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": [{"name": "workspace", "emptyDir": {}}, {"name": "tmp", "emptyDir": {}}],
    }
    if settings.k8s_workspace_volume_claim and settings.workspace_dir is not None:
        # The folder workspace, at the path the control plane sees it at: the runner syncs from it as is.
        claim = {"claimName": settings.k8s_workspace_volume_claim, "readOnly": True}
        pod_spec["volumes"].append({"name": "workspace-source", "persistentVolumeClaim": claim})
        container["volumeMounts"].append(
            {"name": "workspace-source", "mountPath": str(settings.workspace_dir), "readOnly": True}
        )
    if settings.k8s_runner_service_account:
        pod_spec["serviceAccountName"] = settings.k8s_runner_service_account
    if settings.runner_image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": name} for name in settings.runner_image_pull_secrets]
    if settings.k8s_node_selector:
        pod_spec["nodeSelector"] = dict(settings.k8s_node_selector)
    if settings.k8s_tolerations:
        pod_spec["tolerations"] = [t.model_dump(exclude_none=True) for t in settings.k8s_tolerations]
    return pod_spec


def build_job(spec: LaunchSpec, settings: Settings, owner: dict[str, Any] | None = None) -> dict[str, Any]:
    """The execution's Job, created suspended: it starts once its Secret exists (see `build_secret`). `owner`: the
    reference to the WorkflowRun it belongs to, if any."""
    labels = runner_labels(spec)
    annotations = runner_annotations(spec)
    pod_spec = _pod_spec(
        settings, "bifrost_runner", _env(spec), _resources(spec.resources, spec.memory_limit_mb, settings)
    )
    metadata: dict[str, Any] = {
        "name": job_name(spec.execution_id),
        "namespace": settings.k8s_namespace,
        "labels": labels,
        "annotations": annotations,
    }
    if owner is not None:
        metadata["ownerReferences"] = [owner]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata,
        "spec": {
            "suspend": True,
            "backoffLimit": 0,
            "activeDeadlineSeconds": spec.timeout_seconds + settings.k8s_deadline_grace_seconds,
            "ttlSecondsAfterFinished": settings.k8s_ttl_seconds_after_finished,
            "template": {"metadata": {"labels": labels, "annotations": annotations}, "spec": pod_spec},
        },
    }


def build_secret(spec: LaunchSpec, settings: Settings, job_uid: str) -> dict[str, Any]:
    """The execution's credentials, owned by its Job: Kubernetes deletes the Secret with the Job."""
    credentials = {name: value for name, value in spec.runner_env().items() if is_credential(name)}
    metadata = {"labels": runner_labels(spec), "annotations": runner_annotations(spec)}
    return _owned_secret(
        settings, secret_name(spec.execution_id), job_name(spec.execution_id), job_uid, metadata, credentials
    )


def _owned_secret(
    settings: Settings, name: str, job: str, job_uid: str, metadata: dict[str, Any], values: dict[str, str]
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "immutable": True,
        "metadata": {
            "name": name,
            "namespace": settings.k8s_namespace,
            **metadata,
            "ownerReferences": [
                {
                    "apiVersion": "batch/v1",
                    "kind": "Job",
                    "name": job,
                    "uid": job_uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "data": {key: base64.b64encode(value.encode()).decode() for key, value in values.items()},
    }


def pool_labels(pool: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "bifrost-runner",
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "app.kubernetes.io/part-of": "bifrost",
        POOL: pool,
    }


def pool_secret_name(name: str) -> str:
    return f"{name}-pool"


def build_pool_job(
    name: str,
    pool: str,
    resources: RunnerResources | None,
    runner_env: dict[str, str],
    credentials: dict[str, str],
    settings: Settings,
) -> dict[str, Any]:
    """A pool pod's Job, created suspended like an execution's: it waits for one claim (see
    `bifrost_runner.pool`). `resources`: its pool's (None: the defaults); `runner_env`: what every run of the pool
    shares; `credentials`: its own pool identity and the pool's other credentials, which go into its Secret
    (`build_pool_secret`)."""
    env: list[dict[str, Any]] = [{"name": "PYTHONUNBUFFERED", "value": "1"}, {"name": "HOME", "value": "/tmp"}]
    env += [{"name": key, "value": value} for key, value in runner_env.items()]
    env += [
        {"name": key, "valueFrom": {"secretKeyRef": {"name": pool_secret_name(name), "key": key}}}
        for key in credentials
    ]
    labels = pool_labels(pool)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": settings.k8s_namespace, "labels": labels},
        "spec": {
            "suspend": True,
            "backoffLimit": 0,
            "ttlSecondsAfterFinished": settings.k8s_ttl_seconds_after_finished,
            "template": {
                "metadata": {"labels": labels},
                "spec": _pod_spec(settings, "bifrost_runner.pool", env, _resources(resources, None, settings)),
            },
        },
    }


def build_pool_secret(
    name: str, pool: str, credentials: dict[str, str], settings: Settings, job_uid: str
) -> dict[str, Any]:
    """A pool pod's credentials, owned by its Job."""
    return _owned_secret(settings, pool_secret_name(name), name, job_uid, {"labels": pool_labels(pool)}, credentials)


def claimed_metadata(spec: LaunchSpec) -> dict[str, Any]:
    """The labels and annotations a pool pod's Job takes on when its pod takes `spec`'s execution."""
    return {"metadata": {"labels": runner_labels(spec), "annotations": runner_annotations(spec)}}


def pool_of(obj: dict[str, Any]) -> str | None:
    """The pool a Job or pod of ours was made for; None for an execution's own Job."""
    labels: dict[str, str] = obj.get("metadata", {}).get("labels") or {}
    return labels.get(POOL)
