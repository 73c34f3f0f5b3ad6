"""The container of one execution, as `podman run` / `docker run` arguments.

Its name and labels derive from the execution id, so a second launch of the same execution finds the first one's
container. Labels are those of the Kubernetes backend's Jobs, plus the Bifrost installation the container belongs to
(several may share one container engine) and the moment its deadline passes (so that a restarted control plane
stops it in time).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from sqlalchemy.engine import make_url

from bifrost.metadata import millicores
from control_plane.backends.base import LaunchSpec, RunnerResources
from control_plane.settings import Settings

MANAGED_BY = "bifrost"
EXECUTION_ID = "bifrost.io/execution-id"
WORKFLOW = "bifrost.io/workflow"
ORG = "bifrost.io/org"
INSTANCE = "bifrost.io/instance"
DEADLINE = "bifrost.io/deadline"
"""When the backend stops the container (Unix time, seconds): the workflow's timeout plus a grace period."""
TIMEOUT_SECONDS = "bifrost.io/timeout-seconds"
NAME_PREFIX = "bifrost-run-"
RUNNER_TMP = "/tmp"
WORKSPACE_CACHE = f"{RUNNER_TMP}/bifrost-workspace"
"""The runner's revision cache, in its own temporary folder: the container's root filesystem is read-only."""
PULL_POLICIES = {"Always": "always", "IfNotPresent": "missing", "Never": "never"}

_NOT_NAME_CHARS = re.compile(r"[^a-zA-Z0-9_.-]+")


def container_name(execution_id: str) -> str:
    """The container's name: derived from the execution id only (the launch idempotency key)."""
    safe = _NOT_NAME_CHARS.sub("-", execution_id).strip("-.")
    if safe == execution_id and len(safe) <= 200:
        return f"{NAME_PREFIX}{safe}"
    return f"{NAME_PREFIX}{safe[:180]}-{hashlib.sha256(execution_id.encode()).hexdigest()[:10]}"


def instance_of(settings: Settings) -> str:
    """This Bifrost installation, as its database names it: replicas sharing a database share it. The password is
    left out, so that changing it changes nothing here."""
    url = make_url(settings.resolved_database_url).set(password=None)
    return hashlib.sha256(url.render_as_string(hide_password=False).encode()).hexdigest()[:16]


def instance_selector(instance: str) -> str:
    return f"label={INSTANCE}={instance}"


@dataclass(frozen=True)
class Limits:
    memory_mb: int
    cpus: str | None
    """Cores, as `--cpus` takes them ("0.5"); None: no limit."""


def limits(spec: LaunchSpec, settings: Settings) -> Limits:
    """The workflow's own limits, else the defaults; a limit is raised to at least the workflow's request."""
    wanted = spec.resources or RunnerResources()
    memory = wanted.memory_limit_mb or spec.memory_limit_mb or settings.container_memory_limit_mb
    memory = max(memory, wanted.memory_request_mb or 0)
    cpu = wanted.cpu_limit or settings.container_cpu_limit
    if cpu is not None and wanted.cpu_request is not None:
        cpu = max(cpu, wanted.cpu_request, key=millicores)
    return Limits(memory, None if cpu is None else f"{millicores(cpu) / 1000:g}")


def runner_env(spec: LaunchSpec) -> dict[str, str]:
    """The runner's configuration. It is handed to the container by name only (`--env NAME`, the value read from
    the CLI's own environment), so that no credential shows in a process list."""
    # A cache folder of the control plane's means nothing in a container.
    return spec.runner_env() | {"BIFROST_WORKSPACE_CACHE_DIR": WORKSPACE_CACHE}


def workspace_folder(spec: LaunchSpec) -> str | None:
    """The host folder the runner syncs the workspace from; None for a bucket."""
    source = spec.workspace.url if spec.workspace is not None else spec.workspace_dir
    return source if source is not None and source.startswith("/") else None


def labels(spec: LaunchSpec, instance: str, deadline: float) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "bifrost-runner",
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "app.kubernetes.io/part-of": "bifrost",
        EXECUTION_ID: spec.execution_id,
        WORKFLOW: spec.workflow_name,
        ORG: spec.org_id or "global",
        INSTANCE: instance,
        DEADLINE: f"{deadline:.0f}",
        TIMEOUT_SECONDS: str(spec.timeout_seconds),
    }


def run_arguments(spec: LaunchSpec, settings: Settings, instance: str, deadline: float) -> list[str]:
    """`run` and its arguments, up to the image and the runner's command. Runners share the host's network, so they
    reach the control plane and NATS at the addresses the control plane gives them, as local runners do."""
    limit = limits(spec, settings)
    uid = settings.container_run_as_user
    arguments = [
        "run",
        "--detach",
        f"--name={container_name(spec.execution_id)}",
        f"--pull={PULL_POLICIES[settings.runner_image_pull_policy]}",
        "--network=host",
        f"--user={uid}:{uid}",
        "--read-only",
        f"--tmpfs={RUNNER_TMP}:rw,exec,nosuid,nodev,mode=1777",
        "--cap-drop=all",
        "--security-opt=no-new-privileges",
        f"--memory={limit.memory_mb}m",
        # No swap beyond the memory limit: going over it is an OOM kill, as on Kubernetes.
        f"--memory-swap={limit.memory_mb}m",
        f"--pids-limit={settings.container_max_processes}",
    ]
    if limit.cpus is not None:
        arguments.append(f"--cpus={limit.cpus}")
    for name, value in labels(spec, instance, deadline).items():
        arguments.append(f"--label={name}={value}")
    # HOME by value: in the CLI's own environment it would change where the CLI looks for its configuration.
    arguments.append(f"--env=HOME={RUNNER_TMP}")
    for name in runner_env(spec):
        arguments.append(f"--env={name}")
    folder = workspace_folder(spec)
    if folder is not None:
        # The folder workspace, read-only at the path the control plane sees it at: the runner syncs from it as is.
        arguments.append(f"--volume={folder}:{folder}:ro")
    arguments += ["--entrypoint=python", settings.runner_image, "-m", "bifrost_runner"]
    return arguments


def inspect_commands(cli: str, execution_id: str) -> list[str]:
    """The commands that show an execution's container and what it printed."""
    name = container_name(execution_id)
    return [
        f"{cli} ps --all --filter label={EXECUTION_ID}={execution_id}",
        f"{cli} logs {name}",
        f"{cli} inspect {name}",
    ]
